"""Fixtures shared by the whole suite: a real Redis server, settings, the real app factory."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient

from kitchencam.addresses import IPAddress
from kitchencam.app import create_app
from kitchencam.embedded_redis import EmbeddedRedis
from kitchencam.settings import Settings, load_settings


class FakeResolver:
    """Failure injection: answers chosen names with chosen addresses, without any DNS traffic;
    every other name fails to resolve. Records each look-up."""

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = answers or {}
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        if host not in self.answers:
            raise OSError(f"fake resolver: {host} does not resolve")
        return [ipaddress.ip_address(a) for a in self.answers[host]]


@pytest.fixture(autouse=True, scope="session")
def _no_public_stun() -> None:
    """aiortc falls back to a public STUN server when a configuration has no ICE servers
    (None); tests must never reach outside 127.0.0.1, so that fallback fails loudly here."""
    from aiortc.rtcicetransport import RTCIceGatherer

    def refuse() -> list[object]:
        raise AssertionError("a peer connection without iceServers=[] would use public STUN")

    RTCIceGatherer.getDefaultIceServers = staticmethod(refuse)  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server (the embedded one) for the whole session; yields its URL."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied before the test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with a private data directory; WebRTC on loopback only (tests send
    traffic to nothing but 127.0.0.1)."""
    return load_settings({}, data_dir=str(tmp_path / "data"), webrtc_addresses="127.0.0.1")


@pytest.fixture
def resolver() -> FakeResolver:
    """The resolver the app under test uses (no real DNS in tests)."""
    return FakeResolver({"camera.example.com": ["93.184.216.34"]})


AppFactory = Callable[..., web.Application]


@pytest.fixture
def make_app(settings: Settings, redis_url: str, resolver: FakeResolver) -> AppFactory:
    """Build the real app (web role) with the test's settings, Redis and resolver."""

    def make(roles: tuple[str, ...] = ("web",), **overrides: object) -> web.Application:
        s = settings.model_copy(update=overrides) if overrides else settings
        return create_app(s, redis_url, roles=roles, resolver=resolver)

    return make


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., AsyncIterator[TestClient]], make_app: AppFactory
) -> TestClient:
    """An HTTP client for the real app."""
    return await aiohttp_client(make_app())  # type: ignore[no-any-return, misc]
