"""A small KitchenCam deployment on loopback for the scaling benchmarks.

One ``kitchencam redis`` (the persistent Redis of the multi-process form), any number of
``kitchencam web``, ``relay`` and ``checker`` processes sharing it (one data directory, one
password key), one RTSP test camera whose single shared encoder serves every camera
registered in the bench (each registered camera is its own RTSP session, so the relay does
one real pull per camera while the camera side encodes once), and the API calls that
register cameras. ``bench/redis_cost.py`` and ``bench/cameras_per_machine.py`` use it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.relay_load import cpu_times, machine_busy_s, rss_mb
from bench.relay_targets import RelayApi
from tests.support.camera import RtspCamera
from tests.support.serve import cli_env, free_port

LOOPBACK = "127.0.0.1"
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 20.0
POLL_S = 0.2


def say(text: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class RedisProcess:
    """``kitchencam redis`` on a free port (append-only file, fsync every second)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        data = workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self._log = (workdir / "redis.log").open("ab")
        env = cli_env(data)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kitchencam", "redis", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = redis.Redis.from_url(self.url, decode_responses=True)

    def wait_ready(self) -> None:
        """Wait until the server answers PING."""
        end = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("kitchencam redis exited; see redis.log")
            try:
                if self.client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(POLL_S)
        raise RuntimeError("kitchencam redis did not answer")

    def server_pid(self) -> int:
        """PID of the redis-server itself (a child of ``kitchencam redis``)."""
        return int(self.client.info("server")["process_id"])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a deadline."""
        self.client.close()
        _stop(self.proc)
        self._log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Role:
    """One ``kitchencam ROLE`` process on the bench's Redis."""

    def __init__(
        self,
        role: str,
        workdir: Path,
        name: str,
        settings: dict[str, str],
        cwd: Path | None = None,
    ) -> None:
        self.role = role
        self.name = name
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        env = cli_env(workdir / "data", port=str(self.port), instance=name, **settings)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kitchencam", role],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )

    @property
    def pid(self) -> int:
        """The process id (what /proc is read for)."""
        return self.proc.pid

    def health(self) -> dict[str, Any] | None:
        """``/healthz`` as JSON, or None when it does not answer."""
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=2) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as err:
            return dict(json.loads(err.read()))
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return None

    def wait_healthy(self) -> None:
        """Wait until ``/healthz`` answers 200."""
        end = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(POLL_S)
        raise RuntimeError(f"{self.name} not healthy: {self.log_path.read_text()[-2000:]}")

    def cpu_s(self) -> float:
        """CPU-seconds used so far, all threads."""
        return sum(cpu_times(self.pid))

    def rss_mb(self) -> float:
        """Resident set size in MB."""
        return rss_mb(self.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a deadline."""
        _stop(self.proc)
        self._log.close()


@dataclass
class Fleet:
    """Redis, roles and one shared test camera, started and stopped together."""

    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)
    redis: RedisProcess | None = None
    roles: list[Role] = field(default_factory=list)
    camera: RtspCamera | None = None

    def base_settings(self) -> dict[str, str]:
        """Settings every role shares: Redis, one password key, loopback cameras."""
        assert self.redis is not None
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        self.settings = {
            "redis_url": self.redis.url,
            "secret_key": key,
            "allow_networks": "127.0.0.0/8",
            "webrtc_addresses": LOOPBACK,
            "log_level": "WARNING",
            **self.settings,
        }
        return self.settings

    def start_redis(self) -> RedisProcess:
        """Start the Redis every role shares."""
        self.redis = RedisProcess(self.workdir)
        self.redis.wait_ready()
        self.base_settings()
        return self.redis

    def start_role(self, role: str, name: str, cwd: Path | None = None, **extra: str) -> Role:
        """Start one role process (with the code in ``cwd``, default this checkout) and wait
        until it is healthy."""
        proc = Role(role, self.workdir, name, {**self.settings, **extra}, cwd)
        self.roles.append(proc)
        proc.wait_healthy()
        return proc

    def stop_role(self, proc: Role) -> None:
        """Stop one role process."""
        proc.stop()
        self.roles.remove(proc)

    def start_camera(self, camera: RtspCamera) -> str:
        """Start the shared test camera; return its URL."""
        self.camera = camera
        camera.start()
        return camera.url

    def stop(self) -> None:
        """Stop everything this fleet started, roles first."""
        for proc in reversed(self.roles):
            proc.stop()
        self.roles.clear()
        if self.camera is not None:
            self.camera.stop()
        if self.redis is not None:
            self.redis.stop()


async def register(base: str, url: str, count: int) -> list[str]:
    """Register ``count`` cameras with the same URL under one restaurant; return their ids."""
    async with aiohttp.ClientSession() as http:
        api = RelayApi(http, base)
        await api.prepare()
        ids = []
        for i in range(count):
            ids.append(await api.add_camera(f"bench {i}", url))
        return ids


def wait_for(what: str, check: Any, deadline_s: float) -> None:
    """Poll ``check()`` until it is true; fail naming ``what`` after the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(POLL_S * 5)
    raise TimeoutError(f"{what} after {deadline_s:.0f}s")


def live_cameras(client: redis.Redis, ids: Sequence[str]) -> int:
    """How many of ``ids`` a relay reports live (``kc:live:{cid}`` says ``live``)."""
    raws: Any = client.mget([f"kc:live:{cid}" for cid in ids])
    return sum(1 for raw in raws if raw and json.loads(raw).get("state") == "live")


def states(client: redis.Redis, ids: Sequence[str], state: str) -> int:
    """How many of ``ids`` have the compliance state ``state``."""
    raws: Any = client.mget([f"kc:camera:{cid}:state" for cid in ids])
    return sum(1 for raw in raws if raw and json.loads(raw).get("state") == state)


def ok_cameras(client: redis.Redis, ids: Sequence[str]) -> int:
    """How many of ``ids`` have the compliance state ``ok``."""
    return states(client, ids, "ok")


def process_cpu_s(pid: int) -> float:
    """CPU-seconds of a process so far, all threads."""
    return sum(cpu_times(pid))


def machine_s() -> float:
    """Busy CPU-seconds of the whole machine so far."""
    return machine_busy_s()
