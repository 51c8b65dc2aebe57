"""The camera probe: the pure analysis on literal packet lists, the shell on real RTSP
cameras (H.264 and H.265, short and long keyframe intervals, SPS/PPS in-band and SDP-only),
and the address policy in front of it."""

from __future__ import annotations

import ipaddress
import logging
from fractions import Fraction

import pytest

from kitchencam.addresses import AddressError, AddressPolicy
from kitchencam.relay import demo
from kitchencam.relay.demo import DemoAddressPolicy
from kitchencam.relay.ingest import IngestError
from kitchencam.relay.probe import (
    PacketFacts,
    ProbeFacts,
    Prober,
    analyse,
    carries_parameter_sets,
    has_b_frames,
    keyframe_interval,
)
from tests.conftest import FakeResolver
from tests.support.camera import RtspCamera

TB = Fraction(1, 90_000)
FRAME = 3600  # ticks of one frame at 25 fps
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def stream(frames: int, gop: int, *, ps: bool = True, start: int = 0) -> tuple[PacketFacts, ...]:
    """``frames`` packets in order at 25 fps, a keyframe every ``gop`` frames from ``start``."""
    return tuple(
        PacketFacts(
            pts=(start + n) * FRAME,
            dts=None,
            keyframe=(start + n) % gop == 0,
            parameter_sets=ps and (start + n) % gop == 0,
        )
        for n in range(frames)
    )


def facts(packets: tuple[PacketFacts, ...], **overrides: object) -> ProbeFacts:
    base: dict[str, object] = {
        "codec": "h264",
        "time_base": TB,
        "packets": packets,
        "profile": "Main",
        "width": 1280,
        "height": 720,
        "read_s": 5.0,
    }
    base.update(overrides)
    return ProbeFacts(**base)  # type: ignore[arg-type]


def levels(report_advice: tuple[object, ...]) -> list[str]:
    return [a.level for a in report_advice]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("packets", "expected"),
    [
        (stream(60, 50), (2.0, False)),
        (stream(120, 25), (1.0, False)),
        # one keyframe at frame 100 after 100 frames without: at least 4 s
        (stream(125, 100, start=1), (3.96, True)),
        (stream(125, 1000, start=1), (4.96, True)),  # none in 5 s: at least the whole read
        ((), (None, False)),
    ],
)
def test_keyframe_interval(
    packets: tuple[PacketFacts, ...], expected: tuple[float | None, bool]
) -> None:
    interval, at_least = keyframe_interval(packets, TB)
    assert (None if interval is None else round(interval, 2), at_least) == expected


def test_multi_slice_keyframes_count_once() -> None:
    slices = [PacketFacts(0, None, True), PacketFacts(0, None, True)]
    rest = [PacketFacts(n * FRAME, None, n % 50 == 0) for n in range(1, 60)]
    assert keyframe_interval((*slices, *rest), TB) == (2.0, False)


@pytest.mark.parametrize(
    ("pts", "dts", "delay", "expected"),
    [
        ([0, 1, 2, 3], [None] * 4, 0, False),
        ([0, 3, 1, 2, 6, 4, 5], [None] * 7, 0, True),  # I P B B reordering
        ([0, 1, 2], [0, 1, 2], 0, False),
        ([2, 3, 4], [0, 1, 2], 0, True),  # dts behind pts: reordering delay
        ([0, 1, 2], [None] * 3, 2, True),  # the decoder says so
    ],
)
def test_b_frames(pts: list[int], dts: list[int | None], delay: int, expected: bool) -> None:
    packets = [PacketFacts(p, d, False) for p, d in zip(pts, dts, strict=True)]
    assert has_b_frames(packets, delay) is expected


def test_a_good_h264_stream_is_ready() -> None:
    report = analyse(facts(stream(60, 50)))
    assert (report.codec_name, report.fps, report.keyframe_interval_s) == ("H.264", 25.0, 2.0)
    assert report.gop_frames == 50
    assert report.parameter_sets == "in-band"
    assert report.ready
    assert [a.text for a in report.advice] == ["The stream is ready for KitchenCam."]


@pytest.mark.parametrize(
    ("case", "expected_level", "phrase"),
    [
        ({"codec": "hevc"}, "warn", "H.264 sub-stream"),
        ({"codec": "mjpeg"}, "error", "cannot use"),
        ({"packets": stream(125, 100, start=1)}, "warn", "Keyframes come every at least 4.0 s"),
        ({"packets": stream(125, 1000, start=1)}, "error", "No keyframe arrived in 5 s"),
        ({"packets": stream(100, 75)}, "warn", "an I-frame interval of 50 at 25 fps"),
        ({"reorder_delay": 1}, "warn", "B-frames"),
        (
            {"packets": stream(60, 50, ps=False), "out_of_band_parameter_sets": True},
            "ok",
            "That is fine",
        ),
        ({"packets": stream(60, 50, ps=False)}, "error", "no parameter sets"),
        ({"width": 3840, "height": 2160}, "info", "1080p"),
    ],
)
def test_advice(case: dict[str, object], expected_level: str, phrase: str) -> None:
    base: dict[str, object] = {"packets": stream(60, 50)}
    base.update(case)
    report = analyse(facts(**base))  # type: ignore[arg-type]
    matching = [a for a in report.advice if phrase in a.text]
    assert matching, [a.text for a in report.advice]
    assert matching[0].level == expected_level
    assert report.ready is (expected_level in ("ok", "info"))


def test_parameter_sets_in_annexb_packets() -> None:
    sps, pps, idr = b"\x67\x42\x00\x1f", b"\x68\xce", b"\x65\x88"
    start = b"\x00\x00\x00\x01"
    assert carries_parameter_sets("h264", start + sps + start + pps + start + idr)
    assert not carries_parameter_sets("h264", start + idr)
    vps_h265 = bytes([32 << 1, 1])
    assert carries_parameter_sets("hevc", start + vps_h265 + start + bytes([19 << 1, 1]))
    assert not carries_parameter_sets("h264", b"\x00\x00\x00\x05" + idr)  # length-prefixed


# -- real cameras -------------------------------------------------------------------------


def prober() -> Prober:
    return Prober(AddressPolicy(LOOPBACK, FakeResolver()))


async def test_probe_of_a_real_h264_camera() -> None:
    with RtspCamera(width=320, height=240, fps=25, gop=50, sps_pps="sdp-only") as cam:
        report = await prober().probe(cam.url, None, None)
    assert (report.codec, report.profile, report.width, report.height) == (
        "h264",
        "Main",
        320,
        240,
    )
    assert report.fps == pytest.approx(25, abs=0.5)
    assert report.keyframe_interval_s == pytest.approx(2.0, abs=0.1)
    assert report.gop_frames == 50
    assert not report.b_frames
    assert report.parameter_sets == "out-of-band"
    assert report.ready


async def test_probe_advises_the_substream_for_h265_and_a_shorter_keyframe_interval() -> None:
    with RtspCamera(width=320, height=240, fps=25, gop=200, codec="h265") as cam:
        report = await prober().probe(cam.url, None, None)
    assert report.codec == "hevc"
    assert (report.width, report.height) == (320, 240)
    texts = " ".join(a.text for a in report.advice)
    assert "H.264 sub-stream" in texts
    assert report.keyframe_interval_s is not None and report.keyframe_interval_s > 2.0
    assert "Set the camera's keyframe interval to 2 s or less" in texts
    assert not report.ready


async def test_probe_with_credentials_and_a_wrong_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kitchencam")
    with RtspCamera(user="viewer", password="p@ss:word") as cam:
        report = await prober().probe(cam.url, "viewer", "p@ss:word")
        assert report.codec == "h264"
        with pytest.raises(IngestError, match="refused the user name or password") as err:
            await prober().probe(cam.url, "viewer", "wrong")
    assert "p@ss" not in caplog.text and "p%40ss" not in caplog.text
    assert "wrong" not in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://169.254.169.254/latest",  # cloud metadata
        "rtsp://10.0.0.5/stream",  # an internal network
        "rtsp://0x7f.1/stream",  # a disguised loopback
        "file:///etc/passwd",
        "rtsp://user:pw@camera.example.com/stream",
    ],
)
async def test_hostile_addresses_never_reach_the_network(url: str) -> None:
    with pytest.raises(AddressError):
        await Prober(AddressPolicy((), FakeResolver())).probe(url, None, None)


async def test_a_demo_camera_is_tested_on_its_own_encoder_output() -> None:
    report = await Prober(DemoAddressPolicy((), FakeResolver())).probe(
        "rtsp://kitchen-1.demo.invalid/live", None, None
    )
    assert (report.codec, report.profile, report.width, report.height) == (
        "h264",
        "Main",
        demo.WIDTH,
        demo.HEIGHT,
    )
    assert report.fps == pytest.approx(demo.FPS, abs=0.5)
    assert report.keyframe_interval_s == pytest.approx(1.0, abs=0.1)
    assert not report.b_frames
    assert report.ready


async def test_demo_addresses_are_refused_when_demo_is_off() -> None:
    with pytest.raises(AddressError):
        await prober().probe("rtsp://kitchen-1.demo.invalid/live", None, None)
