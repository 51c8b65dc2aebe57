"""The relay end to end: a real RTSP camera in, real aiortc WHEP viewers out."""

from __future__ import annotations

import asyncio
import logging
import threading

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from kitchencam import appkeys
from tests.relay.conftest import add_live_camera, wait_for, wait_live
from tests.support.camera import RtspCamera
from tests.support.whep_client import DecodeErrorCounter, WhepViewer

FRAMES = 25


@pytest.fixture
def decode_errors() -> DecodeErrorCounter:
    counter = DecodeErrorCounter()
    logging.getLogger("aiortc").addHandler(counter)
    yield counter  # type: ignore[misc]
    logging.getLogger("aiortc").removeHandler(counter)


def base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


@pytest.mark.parametrize("sps_pps", ["inband", "sdp-only"])
async def test_viewer_decodes_without_errors(
    relay: TestClient,
    http: aiohttp.ClientSession,
    decode_errors: DecodeErrorCounter,
    sps_pps: str,
) -> None:
    with RtspCamera(width=320, height=240, gop=25, sps_pps=sps_pps) as cam:  # type: ignore[arg-type]
        cid = await add_live_camera(relay, cam.url)
        viewer = WhepViewer(base(relay), cid)
        try:
            await viewer.connect(http)
            await viewer.wait_frames(FRAMES)
            assert viewer.sizes == {(320, 240)}
            assert decode_errors.errors == 0
        finally:
            await viewer.close(http)


async def test_five_viewers_one_upstream_session(
    relay: TestClient, http: aiohttp.ClientSession, camera: RtspCamera
) -> None:
    cid = await add_live_camera(relay, camera.url)
    viewers = [WhepViewer(base(relay), cid) for _ in range(5)]
    try:
        for viewer in viewers:
            await viewer.connect(http)
        await asyncio.gather(*(v.wait_frames(FRAMES) for v in viewers))
        assert relay.app[appkeys.RELAY].stream(cid).viewers == 5  # type: ignore[union-attr]
        assert camera.open_sessions == 1
        assert camera.max_sessions_seen == 1
    finally:
        for viewer in viewers:
            await viewer.close(http)
    await wait_for(lambda: relay.app[appkeys.RELAY].viewers.count == 0, 5, "viewers leaving")


async def test_late_joiner_starts_from_the_cached_gop(
    relay: TestClient, http: aiohttp.ClientSession
) -> None:
    gop_s = 4.0
    with RtspCamera(width=320, height=240, fps=25, gop=100) as cam:
        cid = await add_live_camera(relay, cam.url)
        stream = relay.app[appkeys.RELAY].stream(cid)
        assert stream is not None
        # Join in the middle of a GOP: well after a keyframe, well before the next.
        await wait_for(lambda: stream.gop_units >= 40, 10, "half a GOP cached")
        viewer = WhepViewer(base(relay), cid)
        try:
            await viewer.connect(http)
            await viewer.wait_frames(1)
            assert viewer.first_frame_s is not None
            assert viewer.first_frame_s < gop_s / 4, viewer.first_frame_s
            await viewer.wait_frames(FRAMES)
        finally:
            await viewer.close(http)


async def test_camera_killed_and_restarted_viewers_resume(
    relay: TestClient, http: aiohttp.ClientSession
) -> None:
    with RtspCamera(width=320, height=240, gop=25) as cam:
        cid = await add_live_camera(relay, cam.url)
        stream = relay.app[appkeys.RELAY].stream(cid)
        assert stream is not None
        viewer = WhepViewer(base(relay), cid)
        try:
            await viewer.connect(http)
            await viewer.wait_frames(FRAMES)
            cam.kill()
            await wait_for(
                lambda: stream.status is not None and stream.status.state.value == "retrying",
                15,
                "the relay noticing the camera died",
            )
            cam.restart()
            await wait_for(lambda: stream.reconnects >= 1, 30, "the relay reconnecting")
            # The same WebRTC session gets pictures again.
            await viewer.wait_frames(FRAMES, deadline_s=20)
            assert stream.figures()["reconnects"] >= 1
        finally:
            await viewer.close(http)


async def test_stalled_camera_is_detected_by_the_read_timeout(
    relay: TestClient,
) -> None:
    with RtspCamera(width=320, height=240, gop=25) as cam:
        cid = await add_live_camera(relay, cam.url)
        stream = relay.app[appkeys.RELAY].stream(cid)
        assert stream is not None
        cam.stall()
        await wait_for(
            lambda: (
                stream.status is not None and stream.status.state.value in ("stalled", "retrying")
            ),
            15,
            "the stall being detected",
        )
        assert stream.status is not None and stream.status.reason is not None
        assert stream.status.reason.value in ("timeout", "no packets", "stream ended")
        cam.resume()
        await wait_live(relay, cid)
        await wait_for(
            lambda: stream.status is not None and stream.status.state.value == "live",
            30,
            "the stream coming back",
        )


async def test_a_viewer_that_stops_reading_slows_nobody(
    relay: TestClient, http: aiohttp.ClientSession, camera: RtspCamera
) -> None:
    cid = await add_live_camera(relay, camera.url)
    stream = relay.app[appkeys.RELAY].stream(cid)
    assert stream is not None
    # Failure injection: a viewer queue that is never read, as a stuck sender would be.
    stuck = stream.add_viewer()
    viewer = WhepViewer(base(relay), cid)
    try:
        await viewer.connect(http)
        await viewer.wait_frames(5)
        bound = stream.gop_units + 60
        await wait_for(lambda: stuck.dropped > 0, 15, "the stuck viewer skipping ahead")
        assert len(stuck) <= bound
        before, started = viewer.frames, asyncio.get_running_loop().time()
        await viewer.wait_frames(75, deadline_s=10)
        elapsed = asyncio.get_running_loop().time() - started
        fps = (viewer.frames - before) / elapsed
        assert fps > 20, fps
        assert len(stuck) <= bound
    finally:
        stream.remove_viewer(stuck)
        await viewer.close(http)


async def test_viewer_that_never_connects_is_closed(
    relay: TestClient,
    http: aiohttp.ClientSession,
    camera: RtspCamera,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kitchencam.relay import webrtc

    monkeypatch.setattr(webrtc, "CONNECT_TIMEOUT_S", 1.0)
    cid = await add_live_camera(relay, camera.url)
    viewer = WhepViewer(base(relay), cid)
    await viewer.connect(http, read=False)
    await viewer.pc.close()  # gone without a DELETE, before ICE could finish
    hub = relay.app[appkeys.RELAY]
    await wait_for(lambda: hub.viewers.count == 0, 10, "the dead viewer being closed")


async def test_shutdown_ends_every_thread_and_peer(
    make_app: object, http: aiohttp.ClientSession, camera: RtspCamera
) -> None:
    import ipaddress

    from aiohttp.test_utils import TestServer

    app = make_app(  # type: ignore[operator]
        roles=("web", "relay"), allow_networks=[ipaddress.ip_network("127.0.0.0/8")]
    )
    server = TestServer(app)
    client = TestClient(server)
    await client.start_server()
    try:
        cid = await add_live_camera(client, camera.url)
        viewer = WhepViewer(base(client), cid)
        await viewer.connect(http)
        await viewer.wait_frames(5)
        assert any(t.name == f"ingest-{cid}" for t in threading.enumerate())
    finally:
        await client.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("ingest-")]
    assert app[appkeys.RELAY].viewers.count == 0
    await viewer.close()


async def test_camera_figures_reach_the_api_and_metrics(
    relay: TestClient, camera: RtspCamera
) -> None:
    from tests.helpers import bearer, camera_body, register

    rid, token = await register(relay)
    resp = await relay.post(
        f"/api/v1/restaurants/{rid}/cameras",
        json=camera_body(url=camera.url, password=None),
        headers=bearer(token),
    )
    cid = (await resp.json())["id"]
    await wait_live(relay, cid)
    hub = relay.app[appkeys.RELAY]
    stream = hub.stream(cid)
    assert stream is not None
    await wait_for(lambda: stream.figures()["fps"] > 0, 10, "a frame rate")
    await hub.publish_figures()
    live = (await (await relay.get(f"/api/v1/cameras/{cid}", headers=bearer(token))).json())["live"]
    assert live["state"] == "live" and live["codec"] == "h264" and live["profile"] == "Main"
    assert (live["width"], live["height"]) == (320, 240)
    assert 15 < live["fps"] < 35 and live["bitrate_bps"] > 0 and live["viewers"] == 0
    _, other = await register(relay)
    assert (await relay.get(f"/api/v1/cameras/{cid}", headers=bearer(other))).status == 403
    metrics = await (await relay.get("/metrics")).text()
    assert f'kitchencam_camera_live{{camera="{cid}"}} 1.0' in metrics
