"""Run ``kitchencam`` as a real subprocess and wait for it, with deadlines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0
POLL_S = 0.05


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The process environment without any KITCHENCAM_ setting but the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITCHENCAM_")}
    env["KITCHENCAM_DATA_DIR"] = str(data_dir)
    env.update({f"KITCHENCAM_{k.upper()}": v for k, v in settings.items()})
    return env


def run_cli(
    args: list[str], env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run a one-off ``kitchencam`` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "kitchencam", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class KitchencamProcess:
    """A ``kitchencam`` role running as a subprocess, its stderr kept in a file."""

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
    ) -> None:
        self.port = int(env.setdefault("KITCHENCAM_PORT", str(free_port())))
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kitchencam", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )

    @property
    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, deadline_s: float = START_DEADLINE_S) -> dict[str, object]:
        """Wait until ``/healthz`` answers 200; fail with the process output otherwise."""
        import json

        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"kitchencam exited ({self.proc.returncode}):\n{self.output}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as resp:
                    return dict(json.loads(resp.read()))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(POLL_S)
        raise AssertionError(f"kitchencam not healthy after {deadline_s}s:\n{self.output}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(STOP_DEADLINE_S)
        finally:
            self._log.close()
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self.stop(signal.SIGKILL)
