"""WHEP signalling: the draft's answers, CORS, session resources, and every error a 4xx."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCConfiguration, RTCPeerConnection

from kitchencam import appkeys
from tests.helpers import bearer
from tests.relay.conftest import add_live_camera
from tests.support.camera import RtspCamera
from tests.support.serve import free_port
from tests.support.whep_client import WhepViewer


async def offer_sdp() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def whep_base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def test_post_answers_per_the_draft(relay: TestClient, camera: RtspCamera) -> None:
    cid = await add_live_camera(relay, camera.url)
    resp = await relay.post(
        f"/whep/{cid}", data=await offer_sdp(), headers={"Content-Type": "application/sdp"}
    )
    answer = await resp.text()
    assert resp.status == 201, answer
    assert resp.content_type == "application/sdp"
    assert re.fullmatch(rf"/whep/{cid}/[A-Za-z0-9_-]{{32}}", resp.headers["Location"])
    assert resp.headers["ETag"].startswith('"')
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    exposed = resp.headers["Access-Control-Expose-Headers"]
    assert {"Location", "Link", "ETag"} <= {h.strip() for h in exposed.split(",")}
    # H.264 only, and host candidates only where settings allow (127.0.0.1 here).
    rtpmap = re.findall(r"a=rtpmap:\d+ ([\w-]+)/", answer)
    assert set(rtpmap) <= {"H264", "rtx"} and "H264" in rtpmap
    candidates = re.findall(r"a=candidate:\S+ \d \w+ \d+ (\S+) \d+ typ (\w+)", answer)
    assert candidates and all(c == ("127.0.0.1", "host") for c in candidates)

    session = relay.app[appkeys.RELAY].viewers.get(resp.headers["Location"].rsplit("/", 1)[1])
    assert session is not None
    frag = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=mid:0\r\n" + (
        "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
    )
    patch = await relay.patch(
        resp.headers["Location"],
        data=frag,
        headers={"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": session.etag},
    )
    assert patch.status == 204, await patch.text()
    wrong_etag = await relay.patch(
        resp.headers["Location"],
        data=frag,
        headers={"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": '"nope"'},
    )
    assert wrong_etag.status == 412
    wrong_type = await relay.patch(resp.headers["Location"], data=frag)
    assert wrong_type.status == 415

    deleted = await relay.delete(resp.headers["Location"])
    assert deleted.status == 200
    again = await relay.delete(resp.headers["Location"])
    assert again.status == 404
    assert relay.app[appkeys.RELAY].viewers.count == 0


async def test_preflight_and_ice_server_links(
    aiohttp_client: Callable[..., Awaitable[TestClient]], make_app: Callable[..., Any]
) -> None:
    from pydantic import SecretStr

    client = await aiohttp_client(
        make_app(
            roles=("web", "relay"),
            ice_servers=["stun:stun.example.com:3478", "turn:turn.example.com:3478?transport=udp"],
            turn_username="kitchen",
            turn_password=SecretStr("t0ps3cret"),
        )
    )
    resp = await client.options("/whep/anycamera")
    assert resp.status == 204
    assert resp.headers["Accept-Post"] == "application/sdp"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    links = resp.headers.getall("Link")
    assert '<stun:stun.example.com:3478>; rel="ice-server"' in links
    turn = [link for link in links if link.startswith("<turn:")]
    assert turn and 'username="kitchen"' in turn[0] and 'credential="t0ps3cret"' in turn[0]


BAD_OFFERS = [
    "",
    "hello",
    "v=0",
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n",
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\na=recvonly\r\n",
    "v=0\r\nm=video x y z\r\n",
    "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\na=fmtp:96 ;;;=\r\n",
    "\x00\x01\x02\xff" * 10,
    "v=0\r\n" + "a=candidate:garbage\r\n" * 100,
]


async def test_malformed_offers_get_400_never_500(relay: TestClient, camera: RtspCamera) -> None:
    cid = await add_live_camera(relay, camera.url)
    good = await offer_sdp()
    mangled = [
        good.replace("a=fingerprint", "a=fingerprunt"),
        good.replace("a=ice-pwd", "a=ice-pwx"),
        good.replace("H264/90000", "H265/90000"),
        re.sub(r"a=rtpmap:\d+ H264/90000\r\n", "", good),
        re.sub(r"m=video \d+", "m=video -1", good),
        good[: len(good) // 2],
    ]
    for body in [*BAD_OFFERS, *mangled]:
        resp = await relay.post(
            f"/whep/{cid}",
            data=body.encode("utf-8", "surrogateescape"),
            headers={"Content-Type": "application/sdp"},
        )
        text = await resp.text()
        assert 400 <= resp.status < 500, (resp.status, body[:80], text)
    assert relay.app[appkeys.RELAY].viewers.count == 0


async def test_wrong_type_and_oversized_offers(relay: TestClient, camera: RtspCamera) -> None:
    cid = await add_live_camera(relay, camera.url)
    resp = await relay.post(f"/whep/{cid}", data="v=0", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    big = "v=0\r\n" + "a=x-padding:" + "x" * (70 * 1024) + "\r\n"
    resp = await relay.post(f"/whep/{cid}", data=big, headers={"Content-Type": "application/sdp"})
    assert resp.status == 413


async def test_unknown_disabled_and_not_live_cameras(relay: TestClient) -> None:
    sdp = await offer_sdp()
    headers = {"Content-Type": "application/sdp"}
    assert (await relay.post("/whep/0123456789abcdef", data=sdp, headers=headers)).status == 404

    from tests.helpers import camera_body, register

    rid, token = await register(relay)
    dead = camera_body(url=f"rtsp://127.0.0.1:{free_port()}/nothing", password=None)
    resp = await relay.post(f"/api/v1/restaurants/{rid}/cameras", json=dead, headers=bearer(token))
    cid = (await resp.json())["id"]
    resp = await relay.post(f"/whep/{cid}", data=sdp, headers=headers)
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0
    await relay.patch(f"/api/v1/cameras/{cid}", json={"enabled": False}, headers=bearer(token))
    resp = await relay.post(f"/whep/{cid}", data=sdp, headers=headers)
    assert resp.status == 409
    assert "switched off" in (await resp.json())["error"]["detail"]


async def test_viewer_cap_gives_503_with_retry_after(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_app: Callable[..., Any],
    camera: RtspCamera,
    http: aiohttp.ClientSession,
) -> None:
    client = await aiohttp_client(
        make_app(
            roles=("web", "relay"),
            allow_networks=[ipaddress.ip_network("127.0.0.0/8")],
            max_viewers_per_camera=1,
        )
    )
    cid = await add_live_camera(client, camera.url)
    first = WhepViewer(whep_base(client), cid)
    try:
        await first.connect(http)
        resp = await client.post(
            f"/whep/{cid}", data=await offer_sdp(), headers={"Content-Type": "application/sdp"}
        )
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert "as many viewers" in (await resp.json())["error"]["detail"]
    finally:
        await first.close(http)


async def test_h265_camera_is_refused_with_advice(relay: TestClient) -> None:
    with RtspCamera(width=320, height=240, gop=25, codec="h265") as cam:
        cid = await add_live_camera(relay, cam.url)
        resp = await relay.post(
            f"/whep/{cid}", data=await offer_sdp(), headers={"Content-Type": "application/sdp"}
        )
        assert resp.status == 406
        assert "H.264 sub-stream" in (await resp.json())["error"]["detail"]


@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
async def test_unknown_sessions_are_404(relay: TestClient, method: str) -> None:
    resp = await relay.request(
        method,
        "/whep/somecamera/unknownsession",
        data="a=end-of-candidates\r\n",
        headers={"Content-Type": "application/trickle-ice-sdpfrag"},
    )
    assert resp.status == 404
