"""``kitchencam serve`` with relay worker processes: their environment, supervision, playback."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from kitchencam import keys
from kitchencam.relay.leases import parse_lease
from kitchencam.settings import load_settings
from kitchencam.workers import worker_count, worker_env, worker_instance
from tests.helpers import camera_body, restaurant_body
from tests.support.camera import RtspCamera
from tests.support.serve import POLL_S, KitchencamProcess, cli_env
from tests.support.whep_client import WhepViewer
from tests.test_serve import call

PLAY_DEADLINE_S = 30.0
RESTART_DEADLINE_S = 30.0


def test_a_worker_gets_the_settings_of_serve_and_its_own_address() -> None:
    environ = {"PATH": "/bin", "KITCHENCAM_PORT": "8080", "KITCHENCAM_LOG_LEVEL": "debug"}
    settings = load_settings(environ, host="0.0.0.0", data_dir="rel/data", demo=True)
    env = worker_env(environ, settings, "redis://:pw@127.0.0.1:1/0", 4321, "serve-1-relay-0")
    assert env["PATH"] == "/bin"
    assert env["KITCHENCAM_LOG_LEVEL"] == "debug"  # as serve got it
    assert env["KITCHENCAM_DEMO"] == "1"  # a command-line flag of serve
    assert env["KITCHENCAM_HOST"] == "127.0.0.1" and env["KITCHENCAM_PORT"] == "4321"
    assert env["KITCHENCAM_RELAY_URL"] == "http://127.0.0.1:4321"
    assert env["KITCHENCAM_REDIS_URL"] == "redis://:pw@127.0.0.1:1/0"
    assert env["KITCHENCAM_INSTANCE"] == "serve-1-relay-0"
    assert Path(env["KITCHENCAM_DATA_DIR"]).is_absolute()
    worker = load_settings(env)  # every variable is one the relay role accepts
    assert worker.demo and worker.port == 4321


def test_one_worker_per_core_unless_configured() -> None:
    assert worker_count(load_settings({})) == len(os.sched_getaffinity(0))
    assert worker_count(load_settings({"KITCHENCAM_RELAY_WORKERS": "0"})) == 0


def test_with_no_workers_serve_runs_the_relay_role_itself(tmp_path: Path) -> None:
    serve = KitchencamProcess(
        ["serve"], cli_env(tmp_path / "data", relay_workers="0"), tmp_path / "serve.log"
    )
    try:
        health: dict[str, Any] = serve.wait_healthy()
        assert "relay_workers" not in health
        assert health["roles"]["relay"]["running"] is True
    finally:
        assert serve.stop() == 0
    assert "relay worker" not in serve.output


def test_worker_names_fit_the_instance_pattern() -> None:
    name = worker_instance("h" * 64, 12)
    assert len(name) == 64 and name.endswith("-relay-12")


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspCamera]:
    """A small test camera: 320x180 at 10 fps, a keyframe every second."""
    with RtspCamera(width=320, height=180, fps=10, gop=10, bitrate_kbps=200) as cam:
        yield cam


def health(base: str) -> dict[str, Any]:
    import json

    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as err:
        return dict(json.loads(err.read()))


async def play(base: str, cid: str, http: aiohttp.ClientSession) -> WhepViewer:
    """A viewer that decodes frames, retrying while the camera is not live yet (503)."""
    end = time.monotonic() + PLAY_DEADLINE_S
    while True:
        viewer = WhepViewer(base, cid)
        try:
            await viewer.connect(http)
            await viewer.wait_frames(3)
            return viewer
        except AssertionError:
            await viewer.close(http)
            if time.monotonic() > end:
                raise
            await asyncio.sleep(POLL_S * 4)


async def wait_restarted(base: str, index: int, old_pid: int) -> dict[str, Any]:
    end = time.monotonic() + RESTART_DEADLINE_S
    while time.monotonic() < end:
        worker: dict[str, Any] = health(base)["relay_workers"][index]
        if worker["state"] == "running" and worker["pid"] not in (None, old_pid):
            return worker
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"worker {index} not running again after {RESTART_DEADLINE_S}s")


async def test_serve_relays_in_worker_processes(tmp_path: Path, camera: RtspCamera) -> None:
    data_dir = tmp_path / "data"
    env = cli_env(
        data_dir,
        relay_workers="2",
        allow_networks="127.0.0.0/8",
        webrtc_addresses="127.0.0.1",
        lease_ttl_s="3",
    )
    serve = KitchencamProcess(["serve"], env, tmp_path / "serve.log")
    pids: list[int] = []
    try:
        first: dict[str, Any] = serve.wait_healthy()
        assert set(first["roles"]) == {"web", "relay", "checker"}
        assert first["roles"]["relay"]["detail"] == "2 of 2 relay workers running"
        workers = first["relay_workers"]
        assert [w["state"] for w in workers] == ["running", "running"]
        pids = [w["pid"] for w in workers]

        status, data = call(serve.base, "POST", "/api/v1/restaurants", restaurant_body())
        assert status == 201, data
        rid, token = data["restaurant"]["id"], data["token"]
        body = camera_body(url=camera.url, password=None)
        status, data = call(serve.base, "POST", f"/api/v1/restaurants/{rid}/cameras", body, token)
        assert status == 201, data
        cid = data["id"]

        async with aiohttp.ClientSession() as http:
            viewer = await play(serve.base, cid, http)
            await viewer.close(http)

            # SIGKILL the worker holding the camera: serve starts it again, and the camera
            # plays again (from whichever worker claims it next).
            store = redis.Redis.from_url((data_dir / "redis.url").read_text().strip())
            try:
                lease = parse_lease(store.get(keys.lease(cid)).decode())  # type: ignore[union-attr]
            finally:
                store.close()
            assert lease is not None
            index = [w["instance"] for w in workers].index(lease[0])
            os.kill(pids[index], signal.SIGKILL)
            again = await wait_restarted(serve.base, index, pids[index])
            assert again["restarts"] == 1 and again["last_exit"] == "killed by SIGKILL"
            pids[index] = again["pid"]
            viewer = await play(serve.base, cid, http)
            await viewer.close(http)
    finally:
        code = serve.stop()
    assert code == 0, serve.output
    for pid in pids:  # serve stopped its workers before it exited
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "starting it again" in serve.output
    # The worker's access log names the viewer the web role forwarded the offer for.
    assert re.search(r'"POST /whep/\w+ HTTP/1.1" 201 .* for 127\.0\.0\.1$', serve.output, re.M)
    assert "embedded Redis stopped" in serve.output
