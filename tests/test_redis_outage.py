"""Redis outages: the web answers 503 with Retry-After, loops log once and back off, every role
reconnects when Redis returns, and nothing Redis acknowledged is lost (real Redis, stopped,
killed and restarted on the same port and data directory)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from kitchencam import redisconn
from kitchencam.app import create_app
from kitchencam.embedded_redis import PID_FILE, EmbeddedRedis
from kitchencam.redisconn import OUTAGE_FIRST_DELAY_S, OUTAGE_MAX_DELAY_S, RedisOutage
from kitchencam.settings import Settings
from tests.conftest import FakeResolver
from tests.helpers import bearer, register, restaurant_body
from tests.support.serve import free_port

POLL_S = 0.05
DOWN_ANSWER_DEADLINE_S = 3.0
"""A request during an outage must be answered (503) quickly, not hang on retries."""
RECOVERY_DEADLINE_S = 10.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis for this test alone, on a fixed port so it can be stopped and started again."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), private=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _wait(condition: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not await condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s}s")
        await asyncio.sleep(POLL_S)


def _records(caplog: pytest.LogCaptureFixture, logger: str, level: int, text: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == logger and r.levelno == level and text in r.getMessage()
    )


def test_outage_is_logged_once_and_retries_back_off(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.outage")
    caplog.set_level(logging.DEBUG, logger="tests.outage")
    outage = RedisOutage("loop", logger)
    delays = [outage.failed(ConnectionError("refused")) for _ in range(8)]
    assert outage.down
    assert OUTAGE_FIRST_DELAY_S * 0.7 < delays[0] < OUTAGE_FIRST_DELAY_S * 1.3
    assert all(d <= OUTAGE_MAX_DELAY_S * 1.2 for d in delays)
    assert delays[-1] > OUTAGE_MAX_DELAY_S * 0.7  # grew to the cap
    outage.recovered()
    outage.recovered()
    assert not outage.down
    assert _records(caplog, "tests.outage", logging.WARNING, "Redis unreachable") == 1
    assert _records(caplog, "tests.outage", logging.INFO, "reachable again") == 1
    # The next outage is news again, and starts from the shortest delay.
    assert outage.failed(ConnectionError("refused")) < OUTAGE_FIRST_DELAY_S * 1.3
    assert _records(caplog, "tests.outage", logging.WARNING, "Redis unreachable") == 2
    assert outage.outages == 2


async def test_web_and_checker_ride_out_a_redis_restart(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    settings: Settings,
    resolver: FakeResolver,
    own_redis: EmbeddedRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kitchencam.compliance.checker")
    app: web.Application = create_app(
        settings, own_redis.url, roles=("web", "checker"), resolver=resolver
    )
    client = await aiohttp_client(app)
    rid, token = await register(client, name="Before The Outage")

    own_redis.stop()
    started = time.monotonic()
    resp = await client.get(f"/api/v1/restaurants/{rid}", headers=bearer(token))
    assert time.monotonic() - started < DOWN_ANSWER_DEADLINE_S
    assert resp.status == 503
    assert resp.headers["Retry-After"].isdigit()
    error = (await resp.json())["error"]
    assert error["status"] == 503 and "retry" in error["detail"]
    resp = await client.post("/api/v1/restaurants", json=restaurant_body())
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"].isdigit()
    resp = await client.get(f"/r/{rid}")  # a page, still a 503
    assert resp.status == 503, await resp.text()
    assert resp.content_type == "text/html"
    assert resp.headers["Retry-After"].isdigit()

    async def health() -> dict[str, Any]:
        r = await client.get("/healthz")
        return dict(await r.json())

    async def checker_waits() -> bool:
        body = await health()
        return "waiting for Redis" in body["roles"]["checker"]["detail"]

    await _wait(checker_waits, RECOVERY_DEADLINE_S, "the checker reporting it waits for Redis")
    body = await health()
    assert body["status"] == "degraded"
    assert body["redis"].startswith("unreachable")
    assert body["waiting_for_redis"] == ["checker", "web"]

    def retries_after_first() -> int:
        return _records(caplog, "kitchencam.compliance.checker", logging.DEBUG, "still")

    async def checker_retried() -> bool:
        return retries_after_first() >= 1

    await _wait(checker_retried, RECOVERY_DEADLINE_S, "a second checker attempt")

    own_redis.start()
    resp = await client.get(f"/api/v1/restaurants/{rid}", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["name"] == "Before The Outage"

    async def recovered() -> bool:
        body = await health()
        return bool(
            body["status"] == "ok" and body["roles"]["checker"]["detail"].endswith("applied")
        )

    await _wait(recovered, RECOVERY_DEADLINE_S, "the checker recovering")
    checker = "kitchencam.compliance.checker"
    assert _records(caplog, checker, logging.WARNING, "Redis unreachable") == 1
    assert _records(caplog, checker, logging.INFO, "reachable again") == 1
    assert (await health())["waiting_for_redis"] == []


async def test_an_acknowledged_registration_survives_redis_killed(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    settings: Settings,
    resolver: FakeResolver,
    own_redis: EmbeddedRedis,
) -> None:
    client = await aiohttp_client(create_app(settings, own_redis.url, ("web",), resolver))
    rid, token = await register(client, name="Acknowledged Then Killed")
    pid = int((own_redis.data_dir / PID_FILE).read_text())
    os.kill(pid, signal.SIGKILL)  # no shutdown, no final rewrite of the append-only file
    own_redis.wait()
    own_redis.stop()
    own_redis.start()
    resp = await client.get(f"/api/v1/restaurants/{rid}", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["name"] == "Acknowledged Then Killed"


def test_unsupported_redis_urls_are_refused_naming_what_is_missing() -> None:
    with pytest.raises(redisconn.RedisUrlError, match="CROSSSLOT"):
        redisconn.connect_redis("redis+cluster://127.0.0.1:7000/0")
    with pytest.raises(redisconn.RedisUrlError, match="redis\\+sentinel://"):
        redisconn.check_url("http://127.0.0.1:6379/0")
    for url in ("redis://:pw@127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"):
        redisconn.check_url(url)
