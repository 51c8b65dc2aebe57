"""Take the README's screenshots: ``docs/screenshots/board.png`` (a regulator's compliance
board) and ``docs/screenshots/watch.png`` (a restaurant's watch page), at 1280x800.

Everything is real and on 127.0.0.1: a ``kitchencam serve`` process, RTSP test cameras looping
the real footage of ``bench/clips/good.mp4``, Debian's Chromium driven by Playwright. Three
restaurants register five cameras; one camera is switched off, and one is stopped once it has
been ``ok`` long enough to have a reference view, so it is flagged ``offline`` with its last
good picture. Run from the repository root (about a minute):

    .venv/bin/python -m scripts.readme_screenshots
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from tests.browser.support import (
    CHROMIUM_ARGS,
    REGULATOR,
    REGULATOR_PASSWORD,
    VIEWPORT,
    Server,
    chromium_path,
    running_server,
    sign_in,
)
from tests.support.camera import RtspCamera

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
CLIP = ROOT / "bench" / "clips" / "good.mp4"
STATE_DEADLINE_S = 90.0
PAGE_DEADLINE_MS = 30_000
POLL_S = 0.5

# (restaurant, district, [(camera, where, live)]); live=False: registered switched off.
KITCHENS = [
    (
        "Golden Wok",
        "Wan Chai",
        [("Wok line", "hot kitchen, above the woks", True), ("Cold prep", "salad bench", True)],
    ),
    ("Lucky Dumpling House", "Yau Tsim Mong", [("Steamers", "back kitchen", True)]),
    (
        "Harbour Noodle Bar",
        "Central",
        [("Noodle station", "front counter", True), ("Dish wash", "scullery", False)],
    ),
]
FLAGGED = ("Golden Wok", "Cold prep")


def wait_until(probe: Callable[[], Any], what: str) -> Any:
    """Poll ``probe`` until it gives something truthy, or fail after ``STATE_DEADLINE_S``."""
    end = time.monotonic() + STATE_DEADLINE_S
    while not (value := probe()):
        if time.monotonic() > end:
            raise SystemExit(f"no {what} within {STATE_DEADLINE_S:.0f}s")
        time.sleep(POLL_S)
    return value


def states(server: Server) -> dict[str, str]:
    """Every camera's published state, by camera id."""
    found = server.api("GET", "/api/v1/states?limit=100", token=server.regulator_token)
    return {s["camera_id"]: s["state"] for s in found["states"]}


def has_reference(server: Server, cid: str) -> bool:
    """Whether the camera has an approved reference view (its last good picture)."""
    try:
        server.api("GET", f"/api/v1/cameras/{cid}/reference", token=server.regulator_token)
    except OSError:
        return False
    return True


def stage(server: Server, stack: ExitStack) -> tuple[str, RtspCamera, str]:
    """Register the kitchens with live cameras; return the flagged camera's restaurant id,
    camera and camera id once every live camera is ``ok``."""
    live: list[str] = []
    flagged: tuple[str, RtspCamera, str] | None = None
    for name, district, cameras in KITCHENS:
        rid, token = server.restaurant(name=name, district=district)
        for cam_name, where, switched_on in cameras:
            if switched_on:
                cam = stack.enter_context(
                    RtspCamera(width=640, height=480, fps=10, gop=20, source=CLIP)
                )
                cid = server.camera(rid, token, cam.url, name=cam_name, location=where)
                live.append(cid)
                if (name, cam_name) == FLAGGED:
                    flagged = (rid, cam, cid)
            else:
                server.camera(
                    rid,
                    token,
                    "rtsp://127.0.0.1:9/live",
                    name=cam_name,
                    location=where,
                    enabled=False,
                )
    assert flagged is not None
    wait_until(lambda: all(states(server).get(c) == "ok" for c in live), "ok on every camera")
    return flagged


async def shoot(server: Server, rid: str, cid: str) -> None:
    """The board as a signed-in regulator sees it, and the flagged restaurant's watch page."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            board_ctx = await browser.new_context(viewport=VIEWPORT)
            board = await board_ctx.new_page()
            await sign_in(board, server, REGULATOR, REGULATOR_PASSWORD, "/board")
            await board.locator(
                f'#board-rows tr[data-camera="{cid}"][data-state="offline"]'
            ).wait_for(timeout=PAGE_DEADLINE_MS)
            await board.screenshot(path=OUT / "board.png")

            watch_ctx = await browser.new_context(viewport=VIEWPORT)
            watch = await watch_ctx.new_page()
            await watch.goto(f"{server.base}/r/{rid}")
            await settled_watch_page(watch, cid)
            await watch.screenshot(path=OUT / "watch.png")
        finally:
            await browser.close()


async def settled_watch_page(page: Page, flagged: str) -> None:
    """Wait until the flagged camera shows its placeholder with its last good picture and
    every other camera plays live, counting this page as its viewer."""
    await page.wait_for_function(
        """(flagged) => [...document.querySelectorAll("[data-camera]")].every((card) => {
          if (card.dataset.camera === flagged) {
            const img = card.querySelector('[data-field="snapshot"]');
            return !card.querySelector('[data-field="placeholder"]').hidden
              && img && !img.hidden && img.complete && img.naturalWidth > 0;
          }
          const v = card.querySelector('[data-field="video"]');
          const viewers = card.querySelector('[data-field="viewers"]').textContent;
          return card.dataset.player === "live" && v.videoWidth > 0 && viewers === "1 watching";
        })""",
        arg=flagged,
        timeout=PAGE_DEADLINE_MS,
    )


def main() -> None:
    """Stage the state, take both screenshots, stop everything."""
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp)) as server:
        with ExitStack() as stack:
            rid, cam, cid = stage(server, stack)
            wait_until(lambda: has_reference(server, cid), "reference view of the flagged camera")
            cam.stop()
            wait_until(lambda: states(server).get(cid) == "offline", "offline flag")
            asyncio.run(shoot(server, rid, cid))
    print(f"wrote {OUT / 'board.png'} and {OUT / 'watch.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
