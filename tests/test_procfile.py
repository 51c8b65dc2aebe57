"""The Procfile's multi-process form, run by honcho: Redis, web, relay and checker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import restaurant_body
from tests.support.serve import POLL_S, START_DEADLINE_S, free_port

ROOT = Path(__file__).resolve().parent.parent


def test_honcho_runs_every_line_of_the_procfile(tmp_path: Path) -> None:
    base_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITCHENCAM_")}
    env.update(
        KITCHENCAM_DATA_DIR=str(tmp_path / "data"),
        REDIS_PORT=str(free_port()),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    log = open(tmp_path / "honcho.log", "wb")
    honcho = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "honcho",
            "-f",
            str(ROOT / "Procfile"),
            "-d",
            str(ROOT),
            "start",
            "-p",
            str(base_port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    # honcho gives each process type its own port: web, relay, checker in Procfile order.
    ports = {"web": base_port + 100, "relay": base_port + 200, "checker": base_port + 300}
    try:
        for role, port in ports.items():
            health = wait_healthy(port, honcho, tmp_path / "honcho.log")
            assert list(health["roles"]) == [role]
        req = urllib.request.Request(
            f"http://127.0.0.1:{ports['web']}/api/v1/restaurants",
            data=json.dumps(restaurant_body()).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGTERM)
        honcho.wait(30)
        log.close()
    assert (tmp_path / "data" / "appendonly.aof").exists()


def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    end = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError("honcho exited:\n" + log.read_text(errors="replace"))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return dict(json.loads(r.read()))
        except (OSError, ValueError):
            time.sleep(POLL_S)
    raise AssertionError(f"port {port} not healthy:\n" + log.read_text(errors="replace"))
