"""Webhooks: signatures, the address policy, and deliveries to a real receiver on 127.0.0.1
with retries, back-off and a log of every attempt."""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kitchencam import keys
from kitchencam.addresses import AddressError
from kitchencam.compliance.checker import Checker
from kitchencam.compliance.records import Kind, News
from kitchencam.compliance.webhooks import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Deliverer,
    Webhooks,
    sign,
    verify,
)
from kitchencam.secretbox import SecretBox, generate_key
from tests.conftest import FakeResolver

LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"a":1}'
    header = sign("whsec_x", 1700000000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify("whsec_x", header, body, now=1700000010)
    assert not verify("whsec_x", header, b'{"a":2}', now=1700000010)
    assert not verify("whsec_y", header, body, now=1700000010)
    assert not verify("whsec_x", header, body, now=1700009999)  # replayed much later


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "https://"),
        ("https://user:pw@example.com/x", "user name"),
        ("http://127.0.0.1:9/x", "loopback"),
        ("http://169.254.169.254/latest", "link-local"),
        ("https://internal.example.com/x", "private"),
        ("https://nowhere.example.com/x", "could not be resolved"),
    ],
)
async def test_webhook_urls_follow_the_address_policy(world: Any, url: str, message: str) -> None:
    resolver = FakeResolver({"internal.example.com": ["10.1.2.3"]})
    hooks = Webhooks(world.redis, SecretBox(generate_key()), (), resolver)
    with pytest.raises(AddressError, match=message):
        await hooks.set(world.restaurant.id, url)


class Receiver:
    """A real HTTP receiver on 127.0.0.1 that fails the first ``failures`` requests."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if len(self.requests) <= self.failures:
            return web.Response(status=503)
        return web.Response(status=204)


async def setup(world: Any, receiver: Receiver) -> tuple[TestServer, Webhooks, str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hooks = Webhooks(world.redis, SecretBox(generate_key()), LOOPBACK, FakeResolver())
    _, secret = await hooks.set(world.restaurant.id, f"http://127.0.0.1:{server.port}/hook")
    # One event, through the checker as in production.
    checker = Checker(world.store, world.registry, "checker-a")
    await checker.ensure_groups()
    await world.store.refresh_held([world.camera.id], "relay-1")
    news = News(kind=Kind.HELD, camera=world.camera.id, t=time.time(), to_state="covered")
    await world.store.publish(news, (), world.restaurant.id)
    await checker.read_once(block_ms=10)
    return server, hooks, secret


async def test_delivery_is_signed_json(world: Any) -> None:
    receiver = Receiver()
    server, hooks, secret = await setup(world, receiver)
    try:
        deliverer = Deliverer(hooks, "checker-a", timeout_s=5.0)
        assert await deliverer.deliver_due() == 1
        headers, body = receiver.requests[0]
        assert verify(secret, headers[SIGNATURE_HEADER], body, now=time.time())
        payload = json.loads(body)
        assert payload["type"] == "camera.state_changed"
        assert payload["event"]["to_state"] == "covered"
        assert headers[EVENT_HEADER] == payload["event"]["id"]
        assert await world.redis.zcard(keys.WEBHOOK_QUEUE) == 0
        log = await hooks.log(world.restaurant.id)
        assert log[0]["status"] == 204 and log[0]["final"] and log[0]["attempt"] == 1
    finally:
        await server.close()


async def test_failures_are_retried_with_back_off_and_logged(world: Any) -> None:
    receiver = Receiver(failures=2)
    server, hooks, _ = await setup(world, receiver)
    now = [time.time()]
    try:
        deliverer = Deliverer(hooks, "checker-a", retry_s=3600.0, clock=lambda: now[0])
        assert await deliverer.deliver_due() == 1  # 503
        assert await deliverer.deliver_due() == 0  # not due yet: backing off
        now[0] += 5.0
        assert await deliverer.deliver_due() == 1  # 503 again
        now[0] += 14.0
        assert await deliverer.deliver_due() == 0
        now[0] += 1.0
        assert await deliverer.deliver_due() == 1  # 204
        log = await hooks.log(world.restaurant.id)
        assert [(e["attempt"], e["status"], e["final"]) for e in reversed(log)] == [
            (1, 503, False),
            (2, 503, False),
            (3, 204, True),
        ]
        assert len(receiver.requests) == 3
    finally:
        await server.close()


async def test_delivery_gives_up_after_the_retry_time(world: Any) -> None:
    receiver = Receiver(failures=100)
    server, hooks, _ = await setup(world, receiver)
    now = [time.time()]
    try:
        deliverer = Deliverer(hooks, "checker-a", retry_s=60.0, clock=lambda: now[0])
        await deliverer.deliver_due()
        now[0] += 61.0
        await deliverer.deliver_due()
        log = await hooks.log(world.restaurant.id)
        assert log[0]["final"] and log[0]["status"] == 503
        assert await world.redis.zcard(keys.WEBHOOK_QUEUE) == 0
    finally:
        await server.close()
