"""Table tests for kitchencam.relay.timestamps: literal pts/dts sequences, then real streams."""

from __future__ import annotations

import io
import random
from fractions import Fraction

import av
import numpy as np
import pytest

from kitchencam.relay.h264 import NalType, nal_type, split_annexb
from kitchencam.relay.timestamps import (
    MAX_BACKWARD_STEP_S,
    MAX_FORWARD_STEP_S,
    MAX_MISSING_DTS_RUN,
    TimestampCheck,
    TimestampLimits,
    TimestampValidator,
    TimestampVerdict,
)

TB_90K = Fraction(1, 90_000)  # RTSP's RTP clock
FRAME = 3_000  # one frame at 30 fps in 1/90000
SECOND = 90_000

# Short names keep the verdict tables one row per line.
OK = TimestampVerdict.OK
SAME = TimestampVerdict.SAME_ACCESS_UNIT
PTS_ONLY = TimestampVerdict.PTS_ONLY
UNTIMED = TimestampVerdict.UNTIMED
TOO_LONG = TimestampVerdict.MISSING_DTS_TOO_LONG
NON_MONO = TimestampVerdict.NON_MONOTONIC
PTS_EARLY = TimestampVerdict.PTS_BEFORE_DTS
FORWARD = TimestampVerdict.FORWARD_JUMP
BACK = TimestampVerdict.BACKWARD_JUMP

Packet = tuple[int | None, int | None]
NO_TIMES: Packet = (None, None)


def frames(count: int, start: int = 0) -> list[Packet]:
    """``count`` steady 30 fps packets with pts == dts, from ``start``."""
    return [(start + i * FRAME, start + i * FRAME) for i in range(count)]


def run(packets: list[Packet], limits: TimestampLimits | None = None) -> list[TimestampCheck]:
    """Check (pts, dts) pairs in order with a fresh validator on a 90 kHz time base."""
    validator = TimestampValidator(TB_90K, limits)
    return [validator.check(pts, dts) for pts, dts in packets]


SEQUENCES: dict[str, tuple[list[Packet], list[TimestampVerdict]]] = {
    "steady 30 fps": (frames(4), [OK] * 4),
    "starts anywhere, even negative": (frames(3, start=-2 * FRAME), [OK] * 3),
    "multi-slice keyframe, same pts and dts": (
        [(0, 0), (0, 0), (0, 0), (FRAME, FRAME)],
        [OK, SAME, SAME, OK],
    ),
    "multi-slice keyframe, first slice pts=None with dts": (
        [(None, 0), (0, 0), (0, 0), (FRAME, FRAME)],
        [OK, SAME, SAME, OK],
    ),
    "multi-slice keyframe, later slice pts=None": (
        [(0, 0), (None, 0), (0, 0), (FRAME, FRAME)],
        [OK, SAME, SAME, OK],
    ),
    "very first packet untimed": (
        [(None, None), (0, 0), (0, 0), (FRAME, FRAME)],
        [UNTIMED, OK, SAME, OK],
    ),
    "b-frames: pts jumps about, dts climbs": (
        [(2 * FRAME, 0), (5 * FRAME, FRAME), (3 * FRAME, 2 * FRAME), (4 * FRAME, 3 * FRAME)],
        [OK] * 4,
    ),
    "matroska start: pts only, then dts": (
        [(0, None), (FRAME, None), (2 * FRAME, 0), (3 * FRAME, FRAME)],
        [PTS_ONLY, PTS_ONLY, OK, OK],
    ),
    "pts-only packet does not move history": (
        [(0, 0), (50 * SECOND, None), (FRAME, FRAME)],
        [OK, PTS_ONLY, OK],
    ),
    "small step back is dropped": (
        [(0, 0), (2 * FRAME, 2 * FRAME), (FRAME, FRAME), (3 * FRAME, 3 * FRAME)],
        [OK, OK, NON_MONO, OK],
    ),
    "repeated dts for another picture": (
        [(0, 0), (FRAME, 0), (FRAME, FRAME)],
        [OK, NON_MONO, OK],
    ),
    "backward exactly at the limit is still a drop": (
        [(SECOND, SECOND), (0, 0)],
        [OK, NON_MONO],
    ),
    "camera restart: big step back": (
        [(100 * SECOND, 100 * SECOND), (0, 0), (FRAME, FRAME)],
        [OK, BACK, OK],
    ),
    "forward exactly at the limit is fine": (
        [(0, 0), (10 * SECOND, 10 * SECOND)],
        [OK, OK],
    ),
    "big step forward": (
        [(0, 0), (11 * SECOND, 11 * SECOND), (11 * SECOND + FRAME, 11 * SECOND + FRAME)],
        [OK, FORWARD, OK],
    ),
    "glitch forward and back is two discontinuities": (
        [(0, 0), (3600 * SECOND, 3600 * SECOND), (FRAME, FRAME), (2 * FRAME, 2 * FRAME)],
        [OK, FORWARD, BACK, OK],
    ),
    "pts before dts is dropped": (
        [(0, FRAME), (FRAME, FRAME), (2 * FRAME, 2 * FRAME)],
        [PTS_EARLY, OK, OK],
    ),
    "too many packets without dts": (
        [NO_TIMES] * MAX_MISSING_DTS_RUN + [(0, None), NO_TIMES, (0, 0)],
        [UNTIMED] * MAX_MISSING_DTS_RUN + [TOO_LONG, TOO_LONG, OK],
    ),
    "run of missing dts restarts after a dts": (
        [NO_TIMES] * MAX_MISSING_DTS_RUN + [(0, 0)] + [NO_TIMES] * 2,
        [UNTIMED] * MAX_MISSING_DTS_RUN + [OK, UNTIMED, UNTIMED],
    ),
}


@pytest.mark.parametrize("name", SEQUENCES)
def test_verdicts(name: str) -> None:
    packets, expected = SEQUENCES[name]
    assert [check.verdict for check in run(packets)] == expected


@pytest.mark.parametrize(
    ("verdict", "usable", "discontinuity", "fatal"),
    [
        (OK, True, False, False),
        (SAME, True, False, False),
        (PTS_ONLY, True, False, False),
        (FORWARD, True, True, False),
        (BACK, True, True, False),
        (UNTIMED, False, False, False),
        (NON_MONO, False, False, False),
        (PTS_EARLY, False, False, False),
        (TOO_LONG, False, False, True),
    ],
)
def test_verdict_properties(
    verdict: TimestampVerdict, usable: bool, discontinuity: bool, fatal: bool
) -> None:
    check = TimestampCheck(verdict, None, None, None, 0)
    assert (check.usable, check.discontinuity, check.fatal) == (usable, discontinuity, fatal)


def test_every_verdict_is_in_a_table() -> None:
    seen = {verdict for _, expected in SEQUENCES.values() for verdict in expected}
    assert seen == set(TimestampVerdict)


@pytest.mark.parametrize(
    ("packets", "expected"),
    [
        pytest.param(
            [(0, 0), (FRAME, FRAME)],
            TimestampCheck(OK, FRAME, 0, FRAME / SECOND, 0),
            id="step in seconds",
        ),
        pytest.param(
            [(2 * FRAME, 2 * FRAME), (FRAME, FRAME)],
            TimestampCheck(NON_MONO, FRAME, 2 * FRAME, -FRAME / SECOND, 0),
            id="negative step",
        ),
        pytest.param([(0, 0)], TimestampCheck(OK, 0, None, None, 0), id="first packet"),
        pytest.param(
            [(0, 0), (None, None), (None, None)],
            TimestampCheck(UNTIMED, None, 0, None, 2),
            id="untimed run",
        ),
        pytest.param(
            [(0, 0), (7, None)],
            TimestampCheck(PTS_ONLY, 7, 0, None, 1),
            id="pts only reports pts",
        ),
        pytest.param(
            [(0, 0), (FRAME, FRAME), (0, 0)],
            TimestampCheck(NON_MONO, 0, FRAME, -FRAME / SECOND, 0),
            id="previous is the last accepted dts",
        ),
    ],
)
def test_check_fields(packets: list[Packet], expected: TimestampCheck) -> None:
    assert run(packets)[-1] == expected


@pytest.mark.parametrize(
    ("packets", "expected"),
    [
        pytest.param([(0, 0)], "ok: dts 0", id="first"),
        pytest.param(
            [(0, 0), (11 * SECOND, 11 * SECOND)],
            "forward_jump: dts 0 -> 990000 (+11.000 s)",
            id="jump",
        ),
        pytest.param([(None, None)], "untimed: no dts, no pts (1 in a row)", id="untimed"),
        pytest.param([(5, None)], "pts_only: no dts, pts 5 (1 in a row)", id="pts only"),
    ],
)
def test_describe(packets: list[Packet], expected: str) -> None:
    assert run(packets)[-1].describe() == expected


def test_limits_are_configurable() -> None:
    limits = TimestampLimits(
        max_forward_step_s=0.05, max_backward_step_s=0.01, max_missing_dts_run=0
    )
    checks = run([(0, 0), (2 * FRAME, 2 * FRAME), (FRAME, FRAME), (None, None)], limits)
    assert [c.verdict for c in checks] == [OK, FORWARD, BACK, TOO_LONG]


def test_default_limits_are_the_module_constants() -> None:
    assert TimestampLimits() == TimestampLimits(
        MAX_FORWARD_STEP_S, MAX_BACKWARD_STEP_S, MAX_MISSING_DTS_RUN
    )


def test_reset_forgets_history() -> None:
    validator = TimestampValidator(TB_90K)
    validator.check(100 * SECOND, 100 * SECOND)
    validator.check(None, None)
    validator.reset()
    assert validator.last_dts is None
    assert validator.check(0, 0) == TimestampCheck(OK, 0, None, None, 0)


def test_last_dts_follows_accepted_packets_only() -> None:
    validator = TimestampValidator(TB_90K)
    validator.check(FRAME, FRAME)
    validator.check(0, 0)  # non-monotonic: dropped
    validator.check(9, None)  # pts only: not a dts
    assert validator.last_dts == FRAME


@pytest.mark.parametrize("time_base", [Fraction(0), Fraction(-1, 90_000)])
def test_time_base_must_be_positive(time_base: Fraction) -> None:
    with pytest.raises(ValueError, match="time_base"):
        TimestampValidator(time_base)


def test_never_raises_on_arbitrary_input() -> None:
    rng = random.Random(20240601)
    validator = TimestampValidator(TB_90K)
    values: list[int | None] = [None, 0, 1, -1, FRAME, 2**33, -(2**62), 2**62]
    for _ in range(5_000):
        pts = rng.choice(values) if rng.random() < 0.3 else rng.randrange(-(2**40), 2**40)
        dts = rng.choice(values) if rng.random() < 0.3 else rng.randrange(-(2**40), 2**40)
        assert isinstance(validator.check(pts, dts).verdict, TimestampVerdict)


# --- real streams --------------------------------------------------------------------------------

FRAME_RATE = 30
FRAME_COUNT = 12


def muxed(container_format: str) -> io.BytesIO:
    """Encode a moving gradient with libx264 (B-frames on) into an in-memory container."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as output:
        stream = output.add_stream(
            "libx264", rate=FRAME_RATE, options={"x264-params": "keyint=6:bframes=2:threads=1"}
        )
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        ys, xs = np.mgrid[0:120, 0:160]
        for index in range(FRAME_COUNT):
            luma = ((xs + ys + 5 * index) % 256).astype(np.uint8)
            rgb = np.stack([luma, luma, luma], axis=-1)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("container_format", "expected"),
    [
        # MP4 starts dts below zero so that pts can start at 0 with B-frames.
        ("mp4", {OK}),
        ("mpegts", {OK}),
        # Matroska stores no dts; FFmpeg derives it once B-frames have been seen.
        ("matroska", {PTS_ONLY, OK}),
    ],
)
def test_real_demuxed_streams_are_all_usable(
    container_format: str, expected: set[TimestampVerdict]
) -> None:
    with av.open(muxed(container_format), "r") as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        validator = TimestampValidator(stream.time_base)
        checks = [
            validator.check(packet.pts, packet.dts)
            for packet in container.demux(stream)
            if packet.size
        ]
    assert len(checks) == FRAME_COUNT
    assert {c.verdict for c in checks} == expected
    assert all(c.usable and not c.discontinuity for c in checks)


def test_real_multi_slice_keyframes_split_into_packets() -> None:
    """One packet per slice, the first of the stream without pts or dts, as RTSP can deliver."""
    codec = av.CodecContext.create("libx264", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = 160, 120, "yuv420p"
    codec.time_base = Fraction(1, FRAME_RATE)
    codec.options = {"x264-params": "keyint=3:slices=3:bframes=0:threads=1"}
    codec.open()
    packets = []
    for index in range(6):
        frame = av.VideoFrame(160, 120, "yuv420p")
        frame.pts = index
        packets += codec.encode(frame)
    packets += codec.encode(None)

    validator = TimestampValidator(Fraction(1, FRAME_RATE))
    verdicts: list[TimestampVerdict] = []
    for packet in packets:
        slices = [
            n for n in split_annexb(bytes(packet)) if nal_type(n) in (NalType.IDR, NalType.SLICE)
        ]
        assert len(slices) == 3
        for _ in slices:
            untimed = not verdicts  # the very first slice of the stream
            pts, dts = (None, None) if untimed else (packet.pts, packet.dts)
            verdicts.append(validator.check(pts, dts).verdict)
    assert verdicts == [UNTIMED, OK, SAME] + [OK, SAME, SAME] * 5
