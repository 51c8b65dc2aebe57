"""What the relay benchmark measures: ``kitchencam serve`` (or a variant) as a subprocess, the
API calls that give it a camera, and the test camera itself.

Variants: ``kitchencam`` (the product), ``lean`` (the product with ``bench/lean_relay.py``'s
prototype send loop patched into aiortc), ``stock`` (``bench/stock_relay.py``: aiortc's own
pass-through, the same-machine anchor).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import aiohttp

from tests.support.camera import RtspCamera
from tests.support.serve import cli_env, free_port

API = "/api/v1"
LOOPBACK = "127.0.0.1"
WIDTH, HEIGHT, FPS, BITRATE_KBPS = 1280, 720, 25, 2000
READY_DEADLINE_S = 30.0
READY_POLL_S = 0.2
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0
BENCH = Path(__file__).resolve().parent
VARIANTS = ("kitchencam", "lean", "stock")


def camera(gop_s: float) -> RtspCamera:
    """The bench camera: 720p, 25 fps, 2 Mbit/s, Main profile, SPS/PPS in band, RTSP over TCP."""
    return RtspCamera(
        width=WIDTH,
        height=HEIGHT,
        fps=FPS,
        gop=round(gop_s * FPS),
        bitrate_kbps=BITRATE_KBPS,
        profile="main",
        transport="tcp",
    )


class RelayProcess:
    """The measured relay: one process (its PID is what /proc is read for), log in a file."""

    def __init__(self, variant: str, workdir: Path) -> None:
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.log_path = workdir / "relay.log"
        env = cli_env(
            workdir / "data",
            allow_networks="127.0.0.0/8",
            webrtc_addresses=LOOPBACK,
            log_level="WARNING",
            port=str(self.port),
        )
        argv = {
            "kitchencam": [sys.executable, "-m", "kitchencam", "serve"],
            "lean": [sys.executable, str(BENCH / "lean_relay.py"), "serve"],
            "stock": [sys.executable, str(BENCH / "stock_relay.py"), str(self.port)],
        }[variant]
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The relay's process id."""
        return self.proc.pid

    def wait_healthy(self) -> None:
        """Wait until ``/healthz`` answers; fail with the log otherwise."""
        end = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError(f"relay not healthy: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a deadline."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            self._log.close()


@contextlib.asynccontextmanager
async def relay_process(variant: str, workdir: Path) -> AsyncIterator[RelayProcess]:
    """The relay on loopback, stopped on exit."""
    proc = RelayProcess(variant, workdir)
    try:
        await asyncio.to_thread(proc.wait_healthy)
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


class CameraApi(Protocol):
    """How the bench gives a relay a camera and learns when it plays."""

    async def prepare(self) -> None:
        """Whatever must exist before cameras (a restaurant)."""

    async def add_camera(self, name: str, url: str) -> str:
        """Register a camera; return its id."""

    async def delete_camera(self, camera_id: str) -> None:
        """Remove a camera."""

    async def wait_playable(self, camera_id: str) -> None:
        """Wait until WHEP would answer an offer."""

    async def camera_figures(self, camera_id: str) -> dict[str, float]:
        """The relay's own figures of the camera (may be empty)."""


async def wait_playable(http: aiohttp.ClientSession, base: str, camera_id: str) -> None:
    """Wait until WHEP would answer an offer: a malformed one then gets 400, not 503."""
    end = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < end:
        async with http.post(
            f"{base}/whep/{camera_id}", data="v=0", headers={"Content-Type": "application/sdp"}
        ) as resp:
            if resp.status == 400:
                return
            assert resp.status == 503, f"{resp.status}: {await resp.text()}"
        await asyncio.sleep(READY_POLL_S)
    raise TimeoutError(f"camera {camera_id} not playable after {READY_DEADLINE_S}s")


class RelayApi:
    """Just enough of KitchenCam's API to register cameras and find out when they are live."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.restaurant = ""
        self.token = ""

    async def prepare(self) -> None:
        """Create the restaurant that owns the bench cameras."""
        body = {
            "name": "Bench kitchen",
            "address": "1 Loopback Road",
            "district": "Bench",
            "licence_number": f"BENCH{int(time.time() * 1000)}",
            "contact": "bench@example.invalid",
        }
        async with self.http.post(f"{self.base}{API}/restaurants", json=body) as resp:
            data = await resp.json()
            assert resp.status == 201, data
        self.restaurant, self.token = data["restaurant"]["id"], data["token"]

    async def add_camera(self, name: str, url: str) -> str:
        """Register a camera; return its id."""
        async with self.http.post(
            f"{self.base}{API}/restaurants/{self.restaurant}/cameras",
            headers=self._auth(),
            json={"name": name, "location": "bench", "url": url},
        ) as resp:
            data = await resp.json()
            assert resp.status == 201, data
        return str(data["id"])

    async def delete_camera(self, camera_id: str) -> None:
        """Remove a camera (the relay stops pulling it)."""
        async with self.http.delete(
            f"{self.base}{API}/cameras/{camera_id}", headers=self._auth()
        ) as resp:
            assert resp.status == 204, await resp.text()

    async def wait_playable(self, camera_id: str) -> None:
        """Wait until WHEP would answer an offer."""
        await wait_playable(self.http, self.base, camera_id)

    async def camera_figures(self, camera_id: str) -> dict[str, float]:
        """The relay's own figures of a camera from ``/metrics`` (fps, bit rate, GOP...)."""
        async with self.http.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        figures = {}
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name.startswith("kitchencam_camera_") and f'camera="{camera_id}"' in rest:
                figures[name.removeprefix("kitchencam_camera_")] = float(line.rsplit(" ", 1)[1])
        return figures

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class StockApi:
    """The stock relay's two camera calls."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def prepare(self) -> None:
        """Nothing to prepare."""

    async def add_camera(self, name: str, url: str) -> str:
        """Open the camera in the stock relay."""
        async with self.http.post(f"{self.base}/cameras", json={"url": url}) as resp:
            data = await resp.json()
            assert resp.status == 201, data
        return str(data["id"])

    async def delete_camera(self, camera_id: str) -> None:
        """Close the camera and its viewers."""
        async with self.http.delete(f"{self.base}/cameras/{camera_id}") as resp:
            assert resp.status == 204, await resp.text()

    async def wait_playable(self, camera_id: str) -> None:
        """Wait until WHEP would answer an offer."""
        await wait_playable(self.http, self.base, camera_id)

    async def camera_figures(self, camera_id: str) -> dict[str, float]:
        """The stock relay has none."""
        return {}


def camera_api(variant: str, http: aiohttp.ClientSession, base: str) -> CameraApi:
    """The API of a variant."""
    return StockApi(http, base) if variant == "stock" else RelayApi(http, base)
