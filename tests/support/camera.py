"""The pytest side of the RTSP test camera: start ``rtsp_camera.py`` and follow what it says.

The camera itself runs under the system interpreter (GStreamer's Python bindings live there);
this module only starts it, parses its stdout protocol on a reader thread and waits for
conditions with deadlines, never with fixed sleeps.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

SYSTEM_PYTHON = "/usr/bin/python3"
CAMERA_SCRIPT = Path(__file__).with_name("rtsp_camera.py")
PACKAGE_LIST = Path(__file__).parents[2] / "scripts" / "debian-packages.txt"
START_TIMEOUT_S = 20.0
SIGNAL_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
STDERR_TAIL_LINES = 40
POLL_S = 0.1
# The camera exits when its stdin closes, i.e. when the test process dies, however it dies.
EXIT_WITH_US = "--exit-on-stdin-eof"


class CameraError(AssertionError):
    """The camera did not start, answer or stop in time; the message has its stderr tail."""


class RtspCamera:
    """A real RTSP camera subprocess (one shared live encoder) with a live session count.

    Keyword arguments mirror ``rtsp_camera.py``'s flags. Construction does no I/O: call
    ``start()`` or use it as a context manager. Counters (``open_sessions``,
    ``max_sessions_seen``, ``sessions_opened``) belong to the current camera process and
    start again from zero on ``restart()``.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        path: str = "/stream",
        width: int = 320,
        height: int = 240,
        fps: int = 25,
        bitrate_kbps: int = 1000,
        gop: int = 50,
        codec: Literal["h264", "h265"] = "h264",
        profile: Literal["baseline", "main"] = "main",
        sps_pps: Literal["inband", "sdp-only"] = "inband",
        source: str | Path = "testsrc",
        user: str | None = None,
        password: str | None = None,
        auth: Literal["digest", "basic"] = "digest",
        transport: Literal["tcp", "udp", "both"] = "both",
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.port = port
        self.path = path
        self.gop = gop
        self.fps = fps
        self.user = user
        self.password = password
        self._flags = [
            f"--path={path}",
            f"--width={width}",
            f"--height={height}",
            f"--fps={fps}",
            f"--bitrate-kbps={bitrate_kbps}",
            f"--gop={gop}",
            f"--codec={codec}",
            f"--profile={profile}",
            f"--sps-pps={sps_pps}",
            f"--source={source}",
            f"--transport={transport}",
        ]
        if user is not None and password is not None:
            self._flags += [f"--user={user}", f"--password={password}", f"--auth={auth}"]
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []
        self._changed = threading.Condition()
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._reset_state()

    def _reset_state(self) -> None:
        self._url: str | None = None
        self.open_sessions = 0
        self.max_sessions_seen = 0
        self.sessions_opened = 0
        self._stalls = 0
        self._resumes = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the camera and wait for its READY line; raise ``CameraError`` otherwise."""
        if self._proc is not None:
            raise CameraError("camera already started")
        if not Path(SYSTEM_PYTHON).exists():
            raise CameraError(f"{SYSTEM_PYTHON} is missing; install {PACKAGE_LIST}")
        self._reset_state()
        self._stderr.clear()
        self._proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(CAMERA_SCRIPT), f"--port={self.port}", *self._flags, EXIT_WITH_US],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self._proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self._proc.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self._wait(lambda: self._url is not None, self._start_timeout_s, "READY")
        except CameraError:
            self.kill()
            raise
        assert self._url is not None
        self.port = int(urllib.parse.urlsplit(self._url).port or 0)
        return self

    def stop(self) -> int | None:
        """SIGTERM and wait for a clean exit (SIGKILL after a deadline); return the status."""
        return self._end(signal.SIGTERM)

    def kill(self) -> int | None:
        """SIGKILL: the camera vanishes without closing anything; return the status."""
        return self._end(signal.SIGKILL)

    def restart(self) -> Self:
        """Stop the camera and start a new one with the same options on the same port."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self if self._proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _end(self, sig: int) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            code = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(STOP_TIMEOUT_S)
        for reader in self._readers:
            reader.join(STOP_TIMEOUT_S)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        with self._changed:
            self.open_sessions = 0
            self._changed.notify_all()
        return code

    # -- what the camera says --------------------------------------------------------------

    @property
    def url(self) -> str:
        """``rtsp://127.0.0.1:PORT/PATH``, without credentials."""
        if self._url is None:
            raise CameraError("camera not started")
        return self._url

    @property
    def url_with_credentials(self) -> str:
        """The URL with user and password percent-encoded in its userinfo (FFmpeg decodes it)."""
        if self.user is None or self.password is None:
            return self.url
        userinfo = f"{_quote(self.user)}:{_quote(self.password)}"
        return self.url.replace("rtsp://", f"rtsp://{userinfo}@", 1)

    @property
    def running(self) -> bool:
        """Whether the camera process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def wait_for_sessions(self, count: int, timeout_s: float = SIGNAL_TIMEOUT_S) -> None:
        """Wait until exactly ``count`` RTSP sessions are open."""
        self._wait(lambda: self.open_sessions == count, timeout_s, f"{count} open sessions")

    def stall(self) -> None:
        """Stop sending media, keeping every connection open (a hung camera); wait for it."""
        self._signal_and_wait(signal.SIGUSR1, lambda: self._stalls, "STALLED")

    def resume(self) -> None:
        """Send media again after ``stall()``; wait until the camera confirms."""
        self._signal_and_wait(signal.SIGUSR2, lambda: self._resumes, "RESUMED")

    def _signal_and_wait(self, sig: int, counter: Callable[[], int], what: str) -> None:
        if self._proc is None:
            raise CameraError("camera not started")
        with self._changed:
            before = counter()
        self._proc.send_signal(sig)
        self._wait(lambda: counter() > before, SIGNAL_TIMEOUT_S, what)

    def _wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Wait for ``condition`` (checked under the lock) or fail with the camera's stderr."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not condition() and self.running and time.monotonic() < deadline:
                self._changed.wait(POLL_S)  # woken by every line; polls for the process dying
            if condition():
                return
        if self.running:
            raise CameraError(self._failure(f"no {what} within {timeout_s}s"))
        if self._readers:
            # Let the stderr reader drain what a dying camera said before we quote it.
            self._readers[-1].join(STOP_TIMEOUT_S)
        raise CameraError(self._failure(f"camera gone before {what}"))

    def _failure(self, what: str) -> str:
        status = "not started" if self._proc is None else f"exit status {self._proc.poll()}"
        with self._changed:
            tail = "\n".join(self._stderr) or "(no stderr)"
        return (
            f"RTSP test camera: {what} ({status}; its Debian packages are listed in "
            f"{PACKAGE_LIST}); stderr tail:\n{tail}"
        )

    def _read_stdout(self, stream: IO[str]) -> None:
        """Parse the camera's protocol lines (reader thread)."""
        for line in stream:
            word, _, arg = line.strip().partition(" ")
            with self._changed:
                if word == "READY":
                    self._url = arg
                elif word in ("SESSION-OPEN", "SESSION-CLOSE"):
                    self.open_sessions = int(arg)
                    self.max_sessions_seen = max(self.max_sessions_seen, self.open_sessions)
                    self.sessions_opened += word == "SESSION-OPEN"
                elif word == "STALLED":
                    self._stalls += 1
                elif word == "RESUMED":
                    self._resumes += 1
                self._changed.notify_all()

    def _read_stderr(self, stream: IO[str]) -> None:
        """Keep the last lines of the camera's stderr for failure messages (reader thread)."""
        for line in stream:
            with self._changed:
                self._stderr.append(line.rstrip())


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")
