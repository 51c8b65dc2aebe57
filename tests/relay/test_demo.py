"""Demo cameras: real H.264 from the in-process kitchen, judged by the real analysers, played
through the real relay to a real aiortc viewer; refused when the process is not a demo."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from kitchencam.addresses import AddressPolicy, parse_stream_url
from kitchencam.compliance.frames import KeyframeDecoder
from kitchencam.compliance.pipeline import CameraAnalysis
from kitchencam.compliance.states import State
from kitchencam.relay import h264
from kitchencam.relay.demo import (
    FPS,
    GOP_FRAMES,
    HEIGHT,
    WIDTH,
    CoverSchedule,
    DemoAddressPolicy,
    DemoScene,
    coded_pictures,
    is_demo_address,
    serves_demo,
)
from kitchencam.relay.media import IngestState
from kitchencam.relay.stream import CameraStream
from kitchencam.relay.supervisor import Supervisor
from tests.conftest import FakeResolver
from tests.helpers import bearer, camera_body, register
from tests.relay.conftest import wait_for, wait_live
from tests.support.whep_client import WhepViewer

Client = TestClient[web.Request, web.Application]

WALL0 = 1_800_000_000.0
DEMO_URL = "rtsp://kitchen-1.demo.invalid/live"
SAMPLE_INTERVAL_S = 2.0


def _units(scene: DemoScene, seconds: float) -> list[tuple[float, Any]]:
    pictures = coded_pictures(scene, lambda t: WALL0 + t)
    return [(t, au) for t, au, _ in itertools.islice(pictures, int(seconds * FPS))]


def test_the_demo_source_is_decodable_h264_with_sps_pps_on_every_gop() -> None:
    units = _units(DemoScene(seed=7), 3.0)
    keyframes = [i for i, (_, au) in enumerate(units) if au.keyframe]
    assert keyframes == list(range(0, len(units), GOP_FRAMES))
    for i in keyframes:
        kinds = [h264.nal_type(nal) for nal in h264.split_annexb(units[i][1].data)]
        assert h264.NalType.SPS in kinds and h264.NalType.PPS in kinds and h264.NalType.IDR in kinds
        assert kinds.index(h264.NalType.SPS) < kinds.index(h264.NalType.IDR)
    # A fresh decoder starting at the second keyframe decodes every picture that follows.
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for _, au in units[keyframes[1] :]:
        frames.extend(decoder.decode(av.Packet(au.data)))
    assert len(frames) == len(units) - keyframes[1]
    assert {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}
    pts = [au.pts for _, au in units]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


def test_the_covered_phase_is_flagged_covered_by_the_real_analysers() -> None:
    cover = CoverSchedule(period_s=1000.0, start_s=WALL0 % 1000.0 + 30.0, length_s=14.0)
    scene = DemoScene(seed=11, cover=cover)
    decoder = KeyframeDecoder("h264", None)
    analysis = CameraAnalysis(None)
    analysis.resume(0.0)
    states: dict[float, State] = {}
    last: float | None = None
    for t, au in _units(scene, 58.0):
        if not au.keyframe or (last is not None and t - last < SAMPLE_INTERVAL_S - 0.01):
            continue
        last = t
        analysis.sample(t, decoder.decode(au.data))
        states[t] = analysis.state
    before = [s for t, s in states.items() if t < 30.0]
    during = [s for t, s in states.items() if 38.0 <= t < 44.0]
    after = [s for t, s in states.items() if t >= 54.0]
    assert set(before) == {State.OK}, states
    assert set(during) == {State.COVERED}, states
    assert set(after) == {State.OK}, states
    assert set(states.values()) == {State.OK, State.COVERED}, states  # never moved or frozen


def test_demo_addresses_are_recognised_only_by_the_demo_policy() -> None:
    demo = parse_stream_url(DEMO_URL)
    assert is_demo_address(demo)
    assert serves_demo(DemoAddressPolicy(), demo)
    assert not serves_demo(AddressPolicy(), demo)
    for other in (
        "rtsp://demo.invalid/live",
        "rtsp://a.b.demo.invalid/live",
        "rtsp://kitchen.demo.invalid.example.com/live",
        "rtsps://kitchen.demo.invalid/live",
        "rtsp://kitchen.invalid/live",
    ):
        assert not serves_demo(DemoAddressPolicy(), parse_stream_url(other)), other


async def test_a_demo_address_is_refused_when_demo_is_off(client: Client) -> None:
    rid, token = await register(client)
    resp = await client.post(
        f"/api/v1/restaurants/{rid}/cameras",
        json=camera_body(url=DEMO_URL, password=None),
        headers=bearer(token),
    )
    assert resp.status == 422, await resp.text()
    assert "could not be resolved" in await resp.text()


async def test_the_relay_refuses_a_stored_demo_camera_when_demo_is_off() -> None:
    """A demo camera registered while demo was on, relayed by a process without it."""
    stream = CameraStream("c1")
    resolver = FakeResolver()
    supervisor = Supervisor(
        stream, parse_stream_url(DEMO_URL), None, None, "tcp", AddressPolicy((), resolver)
    )
    task = asyncio.create_task(supervisor.run())
    try:
        await wait_for(
            lambda: stream.status is not None and stream.status.state is IngestState.REFUSED,
            5.0,
            "refusal",
        )
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert resolver.lookups == ["kitchen-1.demo.invalid"]
    assert stream.gop_units == 0


async def test_a_demo_camera_plays_to_a_viewer_through_the_relay(
    aiohttp_client: Callable[..., Awaitable[Client]],
    make_app: Callable[..., Any],
    http: aiohttp.ClientSession,
) -> None:
    client = await aiohttp_client(make_app(roles=("web", "relay"), demo=True))
    rid, token = await register(client)
    resp = await client.post(
        f"/api/v1/restaurants/{rid}/cameras",
        json=camera_body(url=DEMO_URL, username=None, password=None),
        headers=bearer(token),
    )
    assert resp.status == 201, await resp.text()
    cid = (await resp.json())["id"]
    started = time.monotonic()
    await wait_live(client, cid)
    viewer = WhepViewer(str(client.make_url("")).rstrip("/"), cid)
    try:
        await viewer.connect(http)
        await viewer.wait_frames(FPS)
    finally:
        await viewer.close(http)
    assert viewer.sizes == {(WIDTH, HEIGHT)}
    assert time.monotonic() - started < 20.0
