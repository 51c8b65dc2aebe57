"""Fixtures for relay tests: a real RTSP camera, the real app with the relay role, real
aiortc viewers, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from kitchencam import appkeys
from kitchencam.relay.webrtc import configure_host_addresses
from tests.helpers import bearer, camera_body, register
from tests.support.camera import RtspCamera

POLL_S = 0.05
LIVE_DEADLINE_S = 20.0


@pytest.fixture(autouse=True, scope="session")
def _loopback_ice() -> None:
    """ICE host candidates on 127.0.0.1 only, for the relay and the test viewers alike."""
    configure_host_addresses(["127.0.0.1"])


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspCamera]:
    """A live test camera shared by a module's tests (in-band SPS/PPS, 2 s GOP)."""
    with RtspCamera(width=320, height=240, fps=25, gop=50) as cam:
        yield cam


@pytest.fixture
async def relay(
    aiohttp_client: Callable[..., Awaitable[TestClient]], make_app: Callable[..., Any]
) -> TestClient:
    """The real app with web and relay roles, cameras allowed on loopback."""
    app = make_app(roles=("web", "relay"), allow_networks=[ipaddress.ip_network("127.0.0.0/8")])
    return await aiohttp_client(app)


async def add_live_camera(client: TestClient, url: str, **overrides: Any) -> str:
    """Register a camera at ``url`` and wait until the relay has its first keyframe."""
    rid, token = await register(client)
    body = camera_body(url=url, **overrides)
    body.setdefault("password", None)
    resp = await client.post(f"/api/v1/restaurants/{rid}/cameras", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    cid: str = (await resp.json())["id"]
    await wait_live(client, cid)
    return cid


async def wait_live(client: TestClient, cid: str, deadline_s: float = LIVE_DEADLINE_S) -> None:
    """Wait until the relay holds a keyframe of camera ``cid``."""
    hub = client.app[appkeys.RELAY]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        stream = hub.stream(cid)
        if stream is not None and stream.gop_units > 0:
            return
        await asyncio.sleep(POLL_S)
    stream = hub.stream(cid)
    raise AssertionError(f"camera {cid} not live: {stream.figures() if stream else 'not pulled'}")


async def wait_for(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    """Poll ``condition`` until true, or fail saying ``what`` did not happen."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s}s")
        await asyncio.sleep(POLL_S)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client for WHEP requests."""
    async with aiohttp.ClientSession() as session:
        yield session
