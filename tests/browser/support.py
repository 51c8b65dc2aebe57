"""Shared pieces of the real-browser tests and the README screenshot script: Debian's Chromium
with the flags that work headless here, a real ``kitchencam serve`` process with a regulator,
the RTSP test camera, and people's actions done by typing and clicking."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, ViewportSize

from tests.helpers import camera_body, restaurant_body
from tests.support.camera import RtspCamera
from tests.support.serve import KitchencamProcess, cli_env, run_cli

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Headless flags measured to work with Debian's Chromium (see FIELD-NOTES): no sandbox (we run
# as root in CI), no GPU, nothing that phones home, autoplay without a gesture, and real
# loopback ICE candidates instead of mDNS names.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
POLL_S = 0.2
REGULATOR = "inspector"
REGULATOR_PASSWORD = "a long enough password for tests"
CAMERA_SIZE = (640, 360)
CAMERA_FPS = 15
CAMERA_GOP = 15  # one keyframe a second: a returning camera plays again quickly
SIGNUP_PASSWORD = "dumplings every day"


def chromium_path() -> str:
    """Debian's Chromium (scripts/debian-packages.txt); Playwright never downloads one."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("no chromium on PATH: install scripts/debian-packages.txt")


@dataclass
class Server:
    """A running ``kitchencam serve`` and the environment its CLI commands need."""

    proc: KitchencamProcess
    env: dict[str, str]
    regulator_token: str

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.proc.base

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """One JSON API call (blocking); returns the decoded answer, failing on an error."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def restaurant(self, **overrides: Any) -> tuple[str, str]:
        """Register a restaurant through the API; return its id and token."""
        data = self.api("POST", "/api/v1/restaurants", restaurant_body(**overrides))
        return data["restaurant"]["id"], data["token"]

    def camera(self, rid: str, token: str, url: str, **overrides: Any) -> str:
        """Register a camera of restaurant ``rid`` at ``url``; return its id."""
        body = camera_body(url=url, username=None, password=None, **overrides)
        data = self.api("POST", f"/api/v1/restaurants/{rid}/cameras", body, token)
        return str(data["id"])


@contextmanager
def running_server(tmp: Path, **settings: str) -> Iterator[Server]:
    """``kitchencam serve`` with every role, cameras allowed on loopback, WebRTC on 127.0.0.1
    and no ICE servers, and a regulator account; stopped on exit."""
    values = {
        "allow_networks": "127.0.0.0/8",
        "webrtc_addresses": "127.0.0.1",
        "webhook_allow_networks": "127.0.0.0/8",
        "sample_interval_s": "0.5",  # states settle sooner
        "relay_workers": "1",  # a relay worker process, as in production, but only one
        "whep_rate_per_min": "0",  # every viewer of these tests comes from 127.0.0.1
    }
    env = cli_env(tmp / "data", **(values | settings))
    proc = KitchencamProcess(["serve"], env, tmp / "serve.log")
    try:
        proc.wait_healthy()
        done = run_cli(
            ["user", "add", REGULATOR, "--role", "regulator", "--password-stdin"],
            env,
            stdin=REGULATOR_PASSWORD + "\n",
        )
        assert done.returncode == 0, done.stderr
        token = re.search(r"API token \(shown only now\): (\S+)", done.stdout)
        assert token is not None, done.stdout
        yield Server(proc, env, token.group(1))
    finally:
        proc.stop()


def make_camera() -> RtspCamera:
    """A 640x360 test camera with a one-second GOP (not started)."""
    width, height = CAMERA_SIZE
    return RtspCamera(width=width, height=height, fps=CAMERA_FPS, gop=CAMERA_GOP)


async def screenshot_all(ctx: BrowserContext, name: str) -> None:
    """Save a screenshot of every open page of ``ctx`` as ``<name>[-N].png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for n, page in enumerate(ctx.pages):
        suffix = f"-{n}" if n else ""
        await page.screenshot(path=ARTIFACTS / f"{name}{suffix}.png", full_page=True)


async def shot(page: Page, name: str, label: str) -> None:
    """Keep a screenshot of ``page`` as ``<name>-<label>.png`` (``name``: the test's)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"{name}-{label}.png", full_page=True)


async def blocking(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call (process control, urllib) off the loop that drives the browser."""
    return await asyncio.to_thread(func, *args, **kwargs)


async def sign_in(page: Page, server: Server, identity: str, password: str, home: str) -> None:
    """Sign in through the form, by typing and clicking; wait for the home page ``home``."""
    await page.goto(f"{server.base}/signin")
    await page.fill("#identity", identity)
    await page.fill("#password", password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{server.base}{home}**")


async def regulator_page(context: BrowserContext, server: Server) -> Page:
    """A page of ``context`` signed in as the regulator, on the board."""
    page = await context.new_page()
    await sign_in(page, server, REGULATOR, REGULATOR_PASSWORD, "/board")
    return page


async def sign_up(page: Page, server: Server, name: str, district: str = "Wan Chai") -> str:
    """Register a restaurant through the sign-up form, by typing and clicking; returns the API
    token the welcome page shows. The page is left signed in as the restaurant."""
    n = secrets.token_hex(4)  # licence numbers and e-mail addresses are unique
    await page.goto(f"{server.base}/signup")
    await page.fill("#name", name)
    await page.fill("#address", "88 Nathan Road")
    await page.fill("#district", district)
    await page.fill("#licence_number", f"JY-BROWSER-{n}")
    await page.fill("#contact", "+852 5555 0142")
    await page.fill("#email", f"owner{n}@restaurant.example")
    await page.fill("#password", SIGNUP_PASSWORD)
    await page.fill("#password_again", SIGNUP_PASSWORD)
    await page.get_by_role("button", name="Register").click()
    token = page.locator("#api-token")
    await token.wait_for()
    return (await token.text_content() or "").strip()


async def wait_state(server: Server, cid: str, token: str, state: str, deadline_s: float) -> None:
    """Wait until the camera's published compliance state is ``state`` (API polling)."""
    end = time.monotonic() + deadline_s
    while True:
        found = await blocking(server.api, "GET", f"/api/v1/cameras/{cid}/state", None, token)
        if found["state"] == state:
            return
        assert time.monotonic() < end, f"camera {cid} is {found['state']}, not {state}"
        await asyncio.sleep(POLL_S)
