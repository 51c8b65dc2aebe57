"""Redis Sentinel: ``redis+sentinel://`` URLs reach the current master through real sentinels,
and a client follows a failover without being recreated (real redis-server processes)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.exceptions import RedisError

from kitchencam.app import create_app
from kitchencam.embedded_redis import find_redis_server
from kitchencam.redisconn import RedisUrlError, connect_redis, parse_sentinel_url
from kitchencam.settings import Settings, SettingsError, load_settings
from tests.conftest import FakeResolver
from tests.helpers import bearer, register
from tests.support.serve import free_port

SERVICE = "kitchen"
START_DEADLINE_S = 10.0
FAILOVER_DEADLINE_S = 20.0
POLL_S = 0.1
DOWN_AFTER_MS = 1000


class RedisProcess:
    """One redis-server (data node or sentinel) on 127.0.0.1, killed at the end."""

    def __init__(self, workdir: Path, args: list[str], port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self._log = open(workdir / "console.log", "wb")
        self.proc = subprocess.Popen(
            [find_redis_server(), *args], cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        client = redis.Redis(port=self.port, socket_timeout=1)
        end = time.monotonic() + START_DEADLINE_S
        try:
            while time.monotonic() < end:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(POLL_S)
        finally:
            client.close()
        raise AssertionError(f"redis-server on port {self.port} did not answer")

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[tuple[RedisProcess, RedisProcess, RedisProcess]]:
    """A master, its replica, and one sentinel watching them as ``SERVICE`` (quorum 1)."""
    started: list[RedisProcess] = []
    try:
        mp, rp, sp = free_port(), free_port(), free_port()
        base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        master = RedisProcess(tmp_path / "master", [*base, "--port", str(mp)], mp)
        started.append(master)
        replica_args = [*base, "--port", str(rp), "--replicaof", "127.0.0.1", str(mp)]
        replica = RedisProcess(tmp_path / "replica", replica_args, rp)
        started.append(replica)
        conf = tmp_path / "sentinel" / "sentinel.conf"
        conf.parent.mkdir()
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {sp}",
                    f"sentinel monitor {SERVICE} 127.0.0.1 {mp} 1",
                    f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {SERVICE} 5000",
                    "",
                ]
            )
        )
        sentinel = RedisProcess(conf.parent, [str(conf), "--sentinel"], sp)
        started.append(sentinel)
        yield master, replica, sentinel
    finally:
        for process in reversed(started):
            process.kill()


def test_sentinel_urls_are_parsed_and_validated() -> None:
    parsed = parse_sentinel_url("redis+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2/kitchen/3")
    assert parsed.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (parsed.service, parsed.db, parsed.password) == ("kitchen", 3, "p@ss")
    assert "p@ss" not in repr(parsed)
    for bad, why in [
        ("redis+sentinel://h:1", "service"),
        ("redis+sentinel://h:1/kitchen/x", "number"),
        ("redis+sentinel://h:99999/kitchen", "port"),
        ("redis+sentinel://h:1/kitchen?tls=1", "unknown"),
    ]:
        with pytest.raises(RedisUrlError, match=why):
            parse_sentinel_url(bad)
    with pytest.raises(SettingsError, match="KITCHENCAM_REDIS_URL"):
        load_settings({"KITCHENCAM_REDIS_URL": "redis+sentinel://h:1"})
    url = "redis+sentinel://:secret@h:1/kitchen"
    assert load_settings({"KITCHENCAM_REDIS_URL": url}).redis_url is not None


async def test_a_sentinel_url_finds_the_master_and_follows_a_failover(
    sentinel_setup: tuple[RedisProcess, RedisProcess, RedisProcess],
) -> None:
    master, replica, sentinel = sentinel_setup
    client = connect_redis(f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}/0")
    try:
        await client.set("kc:test:before", "written through the sentinel")
        info = await client.info("server")
        assert int(info["tcp_port"]) == master.port
        assert await client.wait(1, 5000) == 1  # the replica has it too

        master.kill()
        started = time.monotonic()
        while True:
            try:
                await client.set("kc:test:after", "written after the failover")
                break
            except RedisError:
                if time.monotonic() - started > FAILOVER_DEADLINE_S:
                    raise
                await asyncio.sleep(POLL_S)
        took = time.monotonic() - started
        info = await client.info("server")
        assert int(info["tcp_port"]) == replica.port
        assert await client.get("kc:test:before") == "written through the sentinel"
        assert took < FAILOVER_DEADLINE_S
    finally:
        await client.aclose()


async def test_the_web_role_keeps_its_data_through_a_sentinel_failover(
    sentinel_setup: tuple[RedisProcess, RedisProcess, RedisProcess],
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    settings: Settings,
    resolver: FakeResolver,
) -> None:
    master, _replica, sentinel = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}/0"
    client = await aiohttp_client(create_app(settings, url, ("web",), resolver))
    rid, token = await register(client, name="Replicated Kitchen")
    replicas = redis.Redis(port=master.port)
    assert replicas.wait(1, 5000) == 1  # on the replica before the master dies
    replicas.close()

    master.kill()
    started = time.monotonic()
    while True:
        resp = await client.get(f"/api/v1/restaurants/{rid}", headers=bearer(token))
        if resp.status == 200:
            break
        assert resp.status == 503, await resp.text()  # never a 500 during the failover
        assert time.monotonic() - started < FAILOVER_DEADLINE_S, "no failover"
        await asyncio.sleep(POLL_S)
    assert (await resp.json())["name"] == "Replicated Kitchen"
    rid2, _ = await register(client, name="After The Failover")
    assert rid2 != rid
