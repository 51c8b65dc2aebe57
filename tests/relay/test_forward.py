"""Any web process takes any viewer: WHEP signalling forwarded to the relay holding the camera.

A web-only app and a relay-only app (two real apps, one Redis, one real RTSP camera) stand in
for two processes; the viewer is a real aiortc peer that talks to the web app only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from kitchencam import appkeys, keys
from kitchencam.relay import leases
from kitchencam.relay.forwarder import FORWARDED_HEADER, answer_headers, local_location
from tests.helpers import bearer, camera_body, register
from tests.relay.conftest import POLL_S, wait_live
from tests.support.camera import RtspCamera
from tests.support.serve import free_port
from tests.support.whep_client import WhepViewer

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
HOLDER_DEADLINE_S = 20.0
SDP = {"Content-Type": "application/sdp"}

App = TestClient[web.Request, web.Application]
Client = Callable[..., Awaitable[App]]


@pytest.fixture(scope="module")
def small_camera() -> Iterator[RtspCamera]:
    """A small, slow test camera: 320x180 at 10 fps, a keyframe every second."""
    with RtspCamera(width=320, height=180, fps=10, gop=10, bitrate_kbps=200) as cam:
        yield cam


@pytest.fixture
async def web_client(aiohttp_client: Client, make_app: Callable[..., web.Application]) -> App:
    """A web-only process."""
    return await aiohttp_client(make_app(roles=("web",), instance="web-1", allow_networks=LOOPBACK))


@pytest.fixture
async def relay_client(aiohttp_client: Client, make_app: Callable[..., web.Application]) -> App:
    """A relay-only process that advertises where it answers."""
    port = free_port()
    app = make_app(
        roles=("relay",),
        instance="relay-1",
        allow_networks=LOOPBACK,
        port=port,
        relay_url=f"http://127.0.0.1:{port}",
        lease_ttl_s=3.0,
    )
    return await aiohttp_client(app, server_kwargs={"port": port})


async def offer_sdp() -> str:
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


async def add_camera(client: App, url: str, **overrides: Any) -> str:
    rid, token = await register(client)
    body = camera_body(url=url, password=None, **overrides)
    resp = await client.post(f"/api/v1/restaurants/{rid}/cameras", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    cid: str = (await resp.json())["id"]
    return cid


async def wait_holder(client: App, cid: str) -> leases.Holder:
    redis = client.app[appkeys.REDIS]
    end = time.monotonic() + HOLDER_DEADLINE_S
    while time.monotonic() < end:
        holder = await leases.holder(redis, cid)
        if holder is not None and holder.url is not None:
            return holder
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"no relay claimed camera {cid} within {HOLDER_DEADLINE_S}s")


def base(client: App) -> str:
    return str(client.make_url("")).rstrip("/")


async def metric(client: App, line_start: str) -> float:
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_viewer_of_a_web_process_plays_from_the_relay(
    web_client: App,
    relay_client: App,
    small_camera: RtspCamera,
    http: aiohttp.ClientSession,
) -> None:
    cid = await add_camera(web_client, small_camera.url)
    holder = await wait_holder(web_client, cid)
    assert (holder.relay_id, holder.url) == ("relay-1", base(relay_client))
    await wait_live(relay_client, cid)
    viewers = relay_client.app[appkeys.RELAY].viewers

    viewer = WhepViewer(base(web_client), cid)
    try:
        await viewer.connect(http)
        assert viewer.location is not None
        assert viewer.location.startswith(f"/whep/{cid}/")  # on the web origin, not the relay's
        assert viewers.count == 1
        await viewer.wait_frames(5)
        assert viewer.sizes == {(320, 180)}
        session = viewers.get(viewer.location.rsplit("/", 1)[1])
        assert session is not None

        frag = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=mid:0\r\n" + (
            "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
        )
        trickle = {"Content-Type": "application/trickle-ice-sdpfrag"}
        url = base(web_client) + viewer.location
        patched = await http.patch(url, data=frag, headers={**trickle, "If-Match": session.etag})
        assert patched.status == 204, await patched.text()
        stale = await http.patch(url, data=frag, headers={**trickle, "If-Match": '"nope"'})
        assert stale.status == 412  # the relay checked the If-Match the web process passed on

        deleted = await http.delete(base(web_client) + viewer.location)
        assert deleted.status == 200
        assert viewers.count == 0
        again = await http.delete(base(web_client) + viewer.location)
        assert again.status == 404
    finally:
        await viewer.close()
    answered = 'kitchencam_whep_forwarded_total{method="POST",outcome="answered"}'
    assert await metric(web_client, answered) == 1.0
    assert relay_client.app[appkeys.RELAY].stream(cid) is not None


async def test_no_holder_is_503_with_retry_after(web_client: App) -> None:
    cid = await add_camera(web_client, "rtsp://camera.example.com/live")
    resp = await web_client.post(f"/whep/{cid}", data=await offer_sdp(), headers=SDP)
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    error = (await resp.json())["error"]
    assert error["status"] == 503 and "not being pulled" in error["detail"]
    assert await metric(web_client, 'kitchencam_whep_refused_total{reason="no_holder"}') == 1.0


async def test_unknown_and_switched_off_cameras(web_client: App) -> None:
    resp = await web_client.post("/whep/0123456789abcdef", data=await offer_sdp(), headers=SDP)
    assert resp.status == 404
    cid = await add_camera(web_client, "rtsp://camera.example.com/live", enabled=False)
    resp = await web_client.post(f"/whep/{cid}", data=await offer_sdp(), headers=SDP)
    assert resp.status == 409
    resp = await web_client.post(f"/whep/{cid}", data="v=0", headers={"Content-Type": "text/x"})
    assert resp.status == 415


async def test_an_unreachable_holder_is_503(
    web_client: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kitchencam.relay.forward")
    cid = await add_camera(web_client, "rtsp://camera.example.com/live")
    redis = web_client.app[appkeys.REDIS]
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    await redis.set(keys.lease(cid), leases.lease_value("relay-gone", 7), ex=30)
    await redis.set(keys.relay("relay-gone"), json.dumps({"url": dead}), ex=30)
    resp = await web_client.post(f"/whep/{cid}", data=await offer_sdp(), headers=SDP)
    assert resp.status == 503, await resp.text()
    assert int(resp.headers["Retry-After"]) >= 1
    assert "does not answer" in (await resp.json())["error"]["detail"]
    # A session's PATCH or DELETE goes to the same (unreachable) holder.
    gone = await web_client.delete(f"/whep/{cid}/abcdefabcdefabcdefabcdefabcdefab")
    assert gone.status == 503
    # One warning for the dead relay, not one per viewer request.
    warnings = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert [r.levelname for r in warnings] == ["WARNING", "DEBUG"]
    unreachable = 'kitchencam_whep_forwarded_total{method="POST",outcome="unreachable"}'
    assert await metric(web_client, unreachable) == 1.0


async def test_viewers_are_rate_limited_per_address(
    aiohttp_client: Client, make_app: Callable[..., web.Application]
) -> None:
    client = await aiohttp_client(make_app(roles=("web",), whep_rate_per_min=2))
    cid = await add_camera(client, "rtsp://camera.example.com/live")
    offer = await offer_sdp()
    statuses = []
    for _ in range(3):
        resp = await client.post(f"/whep/{cid}", data=offer, headers=SDP)
        statuses.append(resp.status)
    assert statuses == [503, 503, 429]
    assert 1 <= int(resp.headers["Retry-After"]) <= 30
    assert (await resp.json())["error"]["status"] == 429
    # A forged forwarding mark does not get around the limit.
    forged = await client.post(f"/whep/{cid}", data=offer, headers={**SDP, FORWARDED_HEADER: "x"})
    assert forged.status == 429
    assert await metric(client, 'kitchencam_whep_refused_total{reason="rate_limited"}') == 2.0


async def test_a_relay_only_process_never_forwards(relay_client: App, web_client: App) -> None:
    # A loopback camera nobody answers at: the relay may try it, and must reach nothing else.
    cid = await add_camera(web_client, f"rtsp://127.0.0.1:{free_port()}/live")
    redis = relay_client.app[appkeys.REDIS]
    other = f"http://127.0.0.1:{free_port()}"
    await redis.set(keys.lease(cid), leases.lease_value("relay-other", 3), ex=30)
    await redis.set(keys.relay("relay-other"), json.dumps({"url": other}), ex=30)
    resp = await relay_client.post(f"/whep/{cid}", data=await offer_sdp(), headers=SDP)
    assert resp.status == 503
    assert "not live" in (await resp.json())["error"]["detail"]


def test_answer_headers_keep_the_viewer_on_this_origin() -> None:
    kept = answer_headers(
        {
            "Location": "http://127.0.0.1:9/whep/c/s",
            "ETag": '"e"',
            "Set-Cookie": "a=b",
            "Content-Type": "application/sdp",
        }
    )
    assert kept["Location"] == "/whep/c/s"
    assert "Set-Cookie" not in kept and kept["ETag"] == '"e"'
    assert local_location("/whep/c/s") == "/whep/c/s"
