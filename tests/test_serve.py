"""``kitchencam serve`` and the CLI as real processes: persistence, locking, settings, users."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import camera_body, restaurant_body
from tests.support.serve import KitchencamProcess, cli_env, run_cli

KILL_AFTER_ACK_S = 1.0  # the scenario: SIGKILL one second after a write was acknowledged
CANARY = "Serve-canary-@:9d"


def call(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    """One JSON request; returns (status, decoded body)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def register_all(base: str) -> tuple[str, str, str]:
    status, data = call(base, "POST", "/api/v1/restaurants", restaurant_body())
    assert status == 201, data
    rid, token = data["restaurant"]["id"], data["token"]
    # A public IP literal (nothing to resolve); disabled, so no relay ever connects to it.
    cam = camera_body(url="rtsp://93.184.216.34/live", password=CANARY, enabled=False)
    status, data = call(base, "POST", f"/api/v1/restaurants/{rid}/cameras", cam, token)
    assert status == 201, data
    return rid, token, data["id"]


def assert_all_there(base: str, rid: str, token: str, cid: str) -> None:
    status, data = call(base, "GET", f"/api/v1/restaurants/{rid}", token=token)
    assert status == 200, data
    status, data = call(base, "GET", f"/api/v1/cameras/{cid}", token=token)
    assert status == 200, data
    assert data["has_password"] is True


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def start_serve(data_dir: Path, tmp_path: Path, name: str) -> KitchencamProcess:
    proc = KitchencamProcess(["serve"], cli_env(data_dir), tmp_path / f"{name}.log")
    try:
        health = proc.wait_healthy()
    except BaseException:
        proc.kill()
        raise
    assert health["status"] == "ok" and set(health["roles"]) == {"web", "relay", "checker"}  # type: ignore[arg-type]
    return proc


def test_restart_keeps_every_registration(data_dir: Path, tmp_path: Path) -> None:
    first = start_serve(data_dir, tmp_path, "first")
    try:
        rid, token, cid = register_all(first.base)
    finally:
        assert first.stop() == 0
    assert "embedded Redis stopped" in first.output

    second = start_serve(data_dir, tmp_path, "second")
    try:
        assert_all_there(second.base, rid, token, cid)
    finally:
        second.stop()
    for proc in (first, second):
        assert CANARY not in proc.output


async def test_sigkill_after_an_acknowledged_write_loses_nothing(
    data_dir: Path, tmp_path: Path
) -> None:
    first = start_serve(data_dir, tmp_path, "first")
    try:
        rid, token, cid = register_all(first.base)
        await asyncio.sleep(KILL_AFTER_ACK_S)
    finally:
        # Kill the embedded Redis too, so nothing gets a chance to flush on the way out.
        redis_pid = int((data_dir / "redis.pid").read_text())
        os.kill(redis_pid, signal.SIGKILL)
        first.kill()
    second = start_serve(data_dir, tmp_path, "second")
    try:
        assert_all_there(second.base, rid, token, cid)
    finally:
        second.stop()


def test_serve_with_the_default_relative_data_dir(tmp_path: Path) -> None:
    env = cli_env(Path("unused"))
    del env["KITCHENCAM_DATA_DIR"]
    proc = KitchencamProcess(["serve"], env, tmp_path / "serve.log", cwd=tmp_path)
    try:
        assert proc.wait_healthy()["status"] == "ok"
    finally:
        assert proc.stop() == 0
    assert (tmp_path / "kitchencam-data" / "appendonly.aof").exists()
    assert (tmp_path / "kitchencam-data" / "secret.key").stat().st_mode & 0o777 == 0o600


def test_second_serve_on_the_same_data_dir_refuses(data_dir: Path, tmp_path: Path) -> None:
    first = start_serve(data_dir, tmp_path, "first")
    try:
        second = run_cli(["serve"], cli_env(data_dir, port="0"))
        assert second.returncode != 0
        assert "in use by another `kitchencam serve`" in second.stderr
        assert first.proc.poll() is None
    finally:
        first.stop()


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("port", "eighty", "KITCHENCAM_PORT"),
        ("allow_networks", "10.0.0.0/33", "KITCHENCAM_ALLOW_NETWORKS"),
        ("log_level", "LOUD", "KITCHENCAM_LOG_LEVEL"),
        ("secret_key", "short", "kitchencam gen-key"),
        ("colour", "red", "unknown setting KITCHENCAM_COLOUR"),
    ],
)
def test_a_bad_setting_stops_with_its_name(
    data_dir: Path, setting: str, value: str, expected: str
) -> None:
    result = run_cli(["serve"], cli_env(data_dir, **{setting: value}))
    assert result.returncode != 0
    assert expected in result.stderr
    assert value not in result.stderr or setting != "secret_key"


def test_roles_need_a_shared_redis(data_dir: Path) -> None:
    for role in ("web", "relay", "checker"):
        result = run_cli([role], cli_env(data_dir))
        assert result.returncode != 0
        assert "KITCHENCAM_REDIS_URL" in result.stderr


def test_each_role_starts_on_a_shared_redis(redis_url: str, data_dir: Path, tmp_path: Path) -> None:
    env = cli_env(data_dir, redis_url=redis_url)
    procs = [
        KitchencamProcess([role], dict(env), tmp_path / f"{role}.log")
        for role in ("web", "relay", "checker")
    ]
    try:
        for role, proc in zip(("web", "relay", "checker"), procs, strict=True):
            health = proc.wait_healthy()
            assert list(health["roles"]) == [role]  # type: ignore[call-overload]
        status, _ = call(procs[0].base, "POST", "/api/v1/restaurants", restaurant_body())
        assert status == 201
    finally:
        for proc in procs:
            proc.stop(signal.SIGINT)


def test_user_commands(data_dir: Path, tmp_path: Path) -> None:
    env = cli_env(data_dir)
    added = run_cli(
        ["user", "add", "inspector.wang", "--role", "regulator", "--password-stdin"],
        env,
        stdin="a long password\n",
    )
    assert added.returncode == 0, added.stderr
    token = added.stdout.split("API token (shown only now): ")[1].strip()
    assert "a long password" not in added.stdout + added.stderr

    again = run_cli(
        ["user", "add", "inspector.wang", "--role", "regulator", "--password-stdin"],
        env,
        stdin="a long password\n",
    )
    assert again.returncode != 0 and "exists already" in again.stderr
    weak = run_cli(
        ["user", "add", "x.y", "--role", "regulator", "--password-stdin"], env, stdin="short\n"
    )
    assert weak.returncode != 0 and "at least" in weak.stderr

    # With serve running, the CLI uses its Redis; the token works on the API.
    proc = start_serve(data_dir, tmp_path, "serve")
    try:
        listed = run_cli(["user", "list"], env)
        assert "inspector.wang\tregulator" in listed.stdout
        status, me = call(proc.base, "GET", "/api/v1/me", token=token)
        assert (status, me) == (200, {"kind": "regulator", "id": "inspector.wang"})
        removed = run_cli(["user", "remove", "inspector.wang"], env)
        assert removed.returncode == 0, removed.stderr
        status, _ = call(proc.base, "GET", "/api/v1/me", token=token)
        assert status == 401
    finally:
        proc.stop()


def test_check_config_and_help(data_dir: Path) -> None:
    result = run_cli(["check-config"], cli_env(data_dir, secret_key="A" * 43 + "="))
    assert result.returncode == 0, result.stderr
    assert "KITCHENCAM_SECRET_KEY = **********" in result.stdout
    assert "embedded Redis:" in result.stdout
    for command in (
        ["--help"],
        ["serve", "--help"],
        ["relay", "--help"],
        ["user", "add", "--help"],
    ):
        helped = run_cli(command, cli_env(data_dir))
        assert helped.returncode == 0 and "usage: kitchencam" in helped.stdout


DEMO_PLAY_DEADLINE_S = 30.0


def test_serve_demo_prints_the_sign_in_and_serves_the_demo_kitchen(
    data_dir: Path, tmp_path: Path
) -> None:
    """The README's first command: a demo restaurant whose simulated cameras reach a relay
    worker process (KITCHENCAM_DEMO passed on), and the pages to open on the console."""
    proc = KitchencamProcess(
        ["serve", "--demo"], cli_env(data_dir, relay_workers="1"), tmp_path / "demo.log"
    )
    try:
        proc.wait_healthy()
        out = proc.output
        watch = re.search(r"watch page \(consumers\): +(\S+)", out)
        sign_in = re.search(r"as (\S+) with password (\S+)", out)
        assert watch is not None and sign_in is not None, out
        assert watch.group(1).startswith(proc.base + "/r/")
        assert f"{proc.base}/board" in out and f"{proc.base}/signup" in out
        with urllib.request.urlopen(watch.group(1), timeout=10) as resp:
            html = resp.read().decode()
        assert "Golden Wok (demo)" in html and "Prep table" in html
        assert "demo.invalid" not in html
        users = run_cli(["user", "list"], cli_env(data_dir))
        assert f"{sign_in.group(1)}\tregulator" in users.stdout, users.stderr
        # The relay worker pulls the demo cameras: their figures come back with the state.
        end = time.monotonic() + DEMO_PLAY_DEADLINE_S
        cameras: list[dict[str, Any]] = []
        while time.monotonic() < end:
            status, body = call(proc.base, "GET", watch.group(1)[len(proc.base) :] + "/status.json")
            assert status == 200
            cameras = body["cameras"]
            if len(cameras) == 3 and all(c["viewers"] == 0 and c["playable"] for c in cameras):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"demo cameras not live within {DEMO_PLAY_DEADLINE_S}s: {cameras}")
    finally:
        assert proc.stop() == 0
