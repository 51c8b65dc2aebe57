"""Relay worker processes of ``kitchencam serve``: every core relays, the web tier stays quick.

One asyncio process tops out near one core, and media (packetising, encrypting, sending) is
what fills it. ``serve`` therefore runs web and checker in its own process and starts
``KITCHENCAM_RELAY_WORKERS`` child processes (default: one per CPU core) that each run the
relay role (``python -m kitchencam relay``) on their own free 127.0.0.1 port. They share the
cameras through the leases in Redis like relays on separate machines would, and serve's web
role forwards viewers' signalling to whichever worker holds a camera
(``kitchencam.relay.forward``); the media then flows from that worker to the viewer directly.

Each worker gets the parent's ``KITCHENCAM_*`` settings (those given as command-line flags
too) plus ``KITCHENCAM_REDIS_URL``, ``KITCHENCAM_HOST=127.0.0.1``, ``KITCHENCAM_PORT``,
``KITCHENCAM_RELAY_URL`` and ``KITCHENCAM_INSTANCE=<serve instance>-relay-<i>``, all in its
environment (never on its command line, where other users could read the Redis password).
Workers die with serve (``PR_SET_PDEATHSIG``, as the embedded Redis does), run in their own
session so that a terminal's Ctrl-C reaches only serve, which stops them in order (SIGTERM,
then SIGKILL after ``STOP_TIMEOUT_S``) before it stops Redis. A worker that exits is started
again after a back-off that grows from 1 s to 30 s and starts over after a minute of healthy
running. Supervision runs on serve's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from kitchencam.relay.backoff import Backoff
from kitchencam.roles import RoleSet, cancel_and_wait
from kitchencam.settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
HEALTH_INTERVAL_S = 30.0  # after start-up; each poll is an access-log line of the worker
HEALTH_TIMEOUT_S = 2.0
READY_POLL_S = 0.2
MAX_INSTANCE_LENGTH = 64
SPAWN_FAILED = 127
_PR_SET_PDEATHSIG = 1


def default_worker_count() -> int:
    """CPU cores this process may run on."""
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return int(count() or 1)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def worker_count(settings: Settings) -> int:
    """How many relay workers ``serve`` starts (0: the relay role runs in serve itself)."""
    return default_worker_count() if settings.relay_workers is None else settings.relay_workers


def worker_instance(serve_instance: str, index: int) -> str:
    """A worker's instance name: serve's, shortened to fit, with ``-relay-<index>``."""
    suffix = f"-relay-{index}"
    return serve_instance[: MAX_INSTANCE_LENGTH - len(suffix)] + suffix


def env_value(value: object) -> str:
    """A setting's value as its ``KITCHENCAM_*`` variable spells it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def worker_env(
    environ: Mapping[str, str],
    settings: Settings,
    redis_url: str,
    port: int,
    instance: str,
) -> dict[str, str]:
    """The environment of one relay worker (pure)."""
    env = dict(environ)
    for name in settings.model_fields_set:
        variable = ENV_PREFIX + name.upper()
        value = getattr(settings, name)
        if variable not in env and value is not None:
            env[variable] = env_value(value)
    env.update(
        {
            f"{ENV_PREFIX}DATA_DIR": str(Path(settings.data_dir).resolve()),
            f"{ENV_PREFIX}REDIS_URL": redis_url,
            f"{ENV_PREFIX}HOST": "127.0.0.1",
            f"{ENV_PREFIX}PORT": str(port),
            f"{ENV_PREFIX}RELAY_URL": f"http://127.0.0.1:{port}",
            f"{ENV_PREFIX}INSTANCE": instance,
        }
    )
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent_hook() -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGTERM when serve dies, however it dies."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # serve died before prctl: nobody would stop us
            os._exit(1)

    return hook


@dataclass
class Worker:
    """One relay worker as serve sees it."""

    index: int
    instance: str = ""
    port: int = 0
    pid: int | None = None
    state: str = "starting"
    detail: str = ""
    since: float = field(default_factory=time.time)
    restarts: int = 0
    last_exit: str | None = None

    def set(self, state: str, detail: str = "") -> None:
        """Record the worker's state."""
        if state != self.state:
            self.since = time.time()
        self.state, self.detail = state, detail

    def as_json(self) -> dict[str, object]:
        """The worker for ``/healthz``."""
        return {
            "instance": self.instance,
            "url": f"http://127.0.0.1:{self.port}" if self.port else None,
            "pid": self.pid,
            "state": self.state,
            "detail": self.detail,
            "since": self.since,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


class WorkerPool:
    """Starts, watches and restarts serve's relay worker processes."""

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        count: int,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._redis_url = redis_url
        self._environ = dict(os.environ if environ is None else environ)
        self.workers = [Worker(i) for i in range(count)]

    def status(self) -> list[dict[str, object]]:
        """Every worker's state, for ``/healthz``."""
        return [w.as_json() for w in self.workers]

    def _report(self, roles: RoleSet) -> None:
        running = sum(1 for w in self.workers if w.state == "running")
        detail = f"{running} of {len(self.workers)} relay workers running"
        roles.set("relay", running == len(self.workers), detail)

    async def run(self, roles: RoleSet) -> None:
        """Keep every worker running until cancelled; then stop them all."""
        for worker in self.workers:
            worker.instance = worker_instance(roles.instance, worker.index)
        self._report(roles)
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
        ) as http:
            tasks = [
                asyncio.create_task(self._keep(w, roles, http), name=f"relay-worker-{w.index}")
                for w in self.workers
            ]
            try:
                await asyncio.wait(tasks)
            finally:
                # Stopping takes up to STOP_TIMEOUT_S; a repeated cancel of this task (see
                # roles.cancel_and_wait) must not cut it short, or Redis would stop first.
                stopping = asyncio.ensure_future(_cancel_once(tasks))
                while not stopping.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(stopping)
                self._report(roles)

    async def _keep(self, worker: Worker, roles: RoleSet, http: aiohttp.ClientSession) -> None:
        """Run one worker again and again, with back-off, until cancelled."""
        backoff = Backoff()
        while True:
            started = time.monotonic()
            code = await self._run_once(worker, roles, http)
            ran_s = time.monotonic() - started
            delay = backoff.next_delay(ran_s)
            worker.restarts += 1
            worker.last_exit = _describe_exit(code)
            worker.pid = None
            worker.set("restarting", f"{worker.last_exit}; starting again in {delay:.1f}s")
            self._report(roles)
            log.warning(
                "relay worker %s %s after %.1fs; starting it again in %.1fs",
                worker.instance,
                worker.last_exit,
                ran_s,
                delay,
            )
            await asyncio.sleep(delay)

    async def _run_once(self, worker: Worker, roles: RoleSet, http: aiohttp.ClientSession) -> int:
        """Start the worker, watch it until it exits; return its exit status."""
        worker.port = _free_port()
        env = worker_env(
            self._environ, self._settings, self._redis_url, worker.port, worker.instance
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kitchencam",
                "relay",
                env=env,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent_hook(),
                start_new_session=True,
            )
        except OSError as err:
            log.error("relay worker %s cannot start: %s", worker.instance, err)
            return SPAWN_FAILED
        worker.pid = proc.pid
        worker.set("starting", "waiting for its /healthz")
        self._report(roles)
        log.info(
            "relay worker %s started (pid %s, http://127.0.0.1:%s)",
            worker.instance,
            proc.pid,
            worker.port,
        )
        watch = asyncio.create_task(self._watch(worker, roles, http), name="worker-health")
        try:
            return await proc.wait()
        finally:
            await cancel_and_wait(watch)
            if proc.returncode is None:
                await _stop(proc, worker)

    async def _watch(self, worker: Worker, roles: RoleSet, http: aiohttp.ClientSession) -> None:
        """Follow the worker's ``/healthz``: running once it answers 200, its detail after."""
        url = f"http://127.0.0.1:{worker.port}/healthz"
        while True:
            try:
                async with http.get(url) as resp:
                    body = await resp.json()
                relay = body.get("roles", {}).get("relay", {})
                if resp.status == 200:
                    worker.set("running", str(relay.get("detail", "")))
                elif worker.state == "running":
                    worker.set("degraded", str(relay.get("detail", body.get("status", ""))))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                if worker.state == "running":
                    worker.set("running", "its /healthz does not answer")
            self._report(roles)
            await asyncio.sleep(READY_POLL_S if worker.state == "starting" else HEALTH_INTERVAL_S)


async def _cancel_once(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel each worker's task once and wait until each has stopped its process."""
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)


async def _stop(proc: asyncio.subprocess.Process, worker: Worker) -> None:
    """SIGTERM, then SIGKILL if the worker has not exited after ``STOP_TIMEOUT_S``."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning(
            "relay worker %s did not stop in %ss; killing it", worker.instance, STOP_TIMEOUT_S
        )
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    worker.pid = None
    worker.set("stopped", _describe_exit(proc.returncode))
    log.info("relay worker %s stopped", worker.instance)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
