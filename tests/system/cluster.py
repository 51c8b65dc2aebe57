"""A multi-process KitchenCam for system tests: a persistent Redis, relays, a web and a checker,
each a real ``kitchencam`` process started as the Procfile does, plus real RTSP cameras.

Processes can be killed and started again (same port, same data) while tests watch. Blocking
calls here (process start-up, health polling) belong in ``asyncio.to_thread`` when viewers
run on the test's event loop.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from kitchencam import keys
from kitchencam.relay.leases import parse_lease
from kitchencam.secretbox import generate_key
from tests.support.camera import RtspCamera
from tests.support.serve import KitchencamProcess, cli_env, free_port, run_cli

REDIS_START_DEADLINE_S = 20.0
HEALTH_DEADLINE_S = 30.0
POLL_S = 0.05
HTTP_TIMEOUT_S = 5.0
CAMERA_OPTIONS: dict[str, Any] = {
    "width": 160,
    "height": 120,
    "fps": 5,
    "gop": 5,
    "bitrate_kbps": 100,
    "transport": "tcp",
}
"""Tiny cameras (a few thousandths of a core each): six of them fit a 2-core machine."""


@dataclass
class Cluster:
    """Every process of a multi-process deployment, and the cameras it pulls."""

    root: Path
    secret_key: str = field(default_factory=generate_key)
    redis_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    redis_process: KitchencamProcess | None = None
    web: KitchencamProcess | None = None
    checker: KitchencamProcess | None = None
    relays: dict[str, KitchencamProcess] = field(default_factory=dict)
    cameras: dict[str, RtspCamera] = field(default_factory=dict)
    """Test cameras by camera id (as registered)."""
    restaurant_id: str = ""
    token: str = ""
    _starts: int = 0

    @property
    def redis_url(self) -> str:
        """The shared Redis (``kitchencam redis`` listens without a password on loopback)."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def client(self) -> redis.Redis:
        """A short-timeout Redis client for the test's own look-ups."""
        return redis.Redis.from_url(
            self.redis_url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )

    def _env(self, name: str, port: int | None = None, **extra: str) -> dict[str, str]:
        settings = {
            "redis_url": self.redis_url,
            "secret_key": self.secret_key,
            "instance": name,
            "allow_networks": "127.0.0.0/8",
            "webrtc_addresses": "127.0.0.1",
            "whep_rate_per_min": "0",
            **extra,
        }
        if port is not None:
            settings["port"] = str(port)
        return cli_env(self.root / name, **settings)

    def _spawn(self, args: list[str], name: str, port: int | None = None) -> KitchencamProcess:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        self._starts += 1
        log = self.root / f"{name}.{self._starts}.log"
        return KitchencamProcess(args, self._env(name, port), log)

    # -- Redis ------------------------------------------------------------------------------

    def start_redis(self) -> None:
        """``kitchencam redis`` on the cluster's port and data directory; wait for PONG."""
        self.redis_process = self._spawn(["redis", "--port", str(self.redis_port)], "redis")
        client = self.client()
        end = time.monotonic() + REDIS_START_DEADLINE_S
        try:
            while time.monotonic() < end:
                if self.redis_process.proc.poll() is not None:
                    raise AssertionError(f"kitchencam redis exited:\n{self.redis_process.output}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    time.sleep(POLL_S)
        finally:
            client.close()
        raise AssertionError(f"Redis not answering:\n{self.redis_process.output}")

    def stop_redis(self) -> None:
        """Stop Redis cleanly (SIGTERM: it finishes its append-only file)."""
        assert self.redis_process is not None
        self.redis_process.stop(signal.SIGTERM)
        self.redis_process = None

    # -- roles ------------------------------------------------------------------------------

    def start_relay(self, name: str) -> KitchencamProcess:
        """A relay process named ``name`` (its instance id, as leases name it)."""
        process = self._spawn(["relay"], name, free_port())
        self.relays[name] = process
        return process

    def start_web(self) -> KitchencamProcess:
        """The web process, always on the same port (viewers and tests keep its address)."""
        self.web = self._spawn(["web"], "web", self.web_port)
        return self.web

    def start_checker(self) -> KitchencamProcess:
        """The checker process."""
        self.checker = self._spawn(["checker"], "checker")
        return self.checker

    def processes(self) -> list[KitchencamProcess]:
        """Every running role process."""
        roles = [self.web, self.checker, *self.relays.values()]
        return [p for p in roles if p is not None]

    def wait_healthy(self, deadline_s: float = HEALTH_DEADLINE_S) -> None:
        """Wait until every role process answers ``/healthz`` with 200."""
        for process in self.processes():
            process.wait_healthy(deadline_s)

    def stop(self) -> None:
        """Stop every process and camera (SIGTERM, then what ``stop`` does on a deadline)."""
        for process in self.processes():
            process.stop()
        self.relays.clear()
        self.web = self.checker = None
        if self.redis_process is not None:
            self.stop_redis()
        for camera in self.cameras.values():
            camera.stop()

    # -- the API ----------------------------------------------------------------------------

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the web process's JSON API with the restaurant's token; the decoded answer."""
        assert self.web is not None
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.web.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as resp:
            return json.loads(resp.read())

    def status(self, path: str) -> tuple[int, dict[str, str]]:
        """Status and headers of a GET with the restaurant's token (errors included)."""
        assert self.web is not None
        request = urllib.request.Request(self.web.base + path)
        request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as resp:
                return resp.status, dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers)

    def register(self, count: int) -> None:
        """Register a restaurant and ``count`` cameras, each a new test camera."""
        answer = self.api(
            "POST",
            "/api/v1/restaurants",
            {
                "name": "Failover Kitchen",
                "address": "1 Test Street",
                "district": "Central",
                "licence_number": f"FO{time.time_ns() % 10**10:010d}",
                "contact": "+852 5555 0199",
            },
        )
        self.restaurant_id, self.token = answer["restaurant"]["id"], answer["token"]
        for i in range(count):
            camera = RtspCamera(path=f"/cam{i}", **CAMERA_OPTIONS).start()
            created = self.api(
                "POST",
                f"/api/v1/restaurants/{self.restaurant_id}/cameras",
                {"name": f"Camera {i}", "location": "line", "url": camera.url},
            )
            self.cameras[created["id"]] = camera

    def add_regulator(self, name: str, password: str) -> None:
        """Create a regulator account with the CLI, as an operator would."""
        result = run_cli(
            ["user", "add", name, "--role", "regulator", "--password-stdin"],
            self._env("cli"),
            stdin=password + "\n",
        )
        assert result.returncode == 0, result.stderr

    # -- what Redis says --------------------------------------------------------------------

    def holders(self) -> dict[str, str | None]:
        """The relay holding each camera's lease (None: nobody)."""
        client = self.client()
        try:
            values = client.mget([keys.lease(cid) for cid in self.cameras])
        finally:
            client.close()
        out: dict[str, str | None] = {}
        for cid, value in zip(self.cameras, values, strict=True):
            lease = parse_lease(str(value) if value is not None else None)
            out[cid] = lease[0] if lease else None
        return out

    def relay_viewers(self, name: str) -> dict[str, float]:
        """``kitchencam_camera_viewers`` of one relay, by camera id (from its ``/metrics``)."""
        with urllib.request.urlopen(self.relays[name].base + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith('kitchencam_camera_viewers{camera="'):
                label, value = line.rsplit(" ", 1)
                out[label.split('"')[1]] = float(value)
        return out
