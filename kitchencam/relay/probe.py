"""Test a camera's stream before (or after) registering it: what it sends and what to change.

``analyse`` is the pure core: from what a short read of the stream showed (``ProbeFacts``) it
works out codec, profile, resolution, frame rate, keyframe interval, B-frames and where the
parameter sets travel, with plain advice. ``collect`` is the shell that reads the stream with
PyAV on a worker thread (the ingest's options: RTSP only, no local files, bounded probing and
timeouts); ``Prober`` checks the address against the policy first and caps concurrent probes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Literal

import av

from kitchencam.addresses import AddressPolicy, StreamAddress, parse_stream_url
from kitchencam.logs import redact
from kitchencam.relay import demo, h264
from kitchencam.relay.ingest import IngestError, IngestTarget, open_options, translate
from kitchencam.relay.media import VIDEO_CLOCK_HZ, Reason, StreamInfo

log = logging.getLogger(__name__)

PROBE_READ_S = 5.0
"""Longest time spent reading packets (after the stream opened)."""
PROBE_KEYFRAMES = 2
"""Reading stops at this many keyframes: enough to measure their interval."""
PROBE_OPEN_TIMEOUT_S = 8.0
PROBE_READ_TIMEOUT_S = 4.0
MAX_PACKETS = 2000
"""Bound on the packets remembered (about 80 s of 25 fps video: never reached in 5 s)."""
MAX_CONCURRENT_PROBES = 4
"""Probes a web process runs at once; more wait (each holds a thread and a camera session)."""
MAX_KEYFRAME_INTERVAL_S = 2.0
"""Longest keyframe interval we recommend."""
LARGE_PICTURE_PIXELS = 1920 * 1080

Level = Literal["ok", "info", "warn", "error"]
ParameterSetPlace = Literal["in-band", "out-of-band", "missing"]

_H264_PARAMETER_SETS = (h264.NalType.SPS, h264.NalType.PPS)
_H265_PARAMETER_SETS = (32, 33, 34)  # VPS, SPS, PPS
CODEC_NAMES = {"h264": "H.264", "hevc": "H.265 (HEVC)"}


@dataclass(frozen=True, slots=True)
class PacketFacts:
    """One demuxed packet: timestamps, keyframe flag, whether it carries parameter sets."""

    pts: int | None
    dts: int | None
    keyframe: bool
    parameter_sets: bool = False


@dataclass(frozen=True, slots=True)
class ProbeFacts:
    """What a short read of a stream showed."""

    codec: str
    time_base: Fraction
    packets: tuple[PacketFacts, ...] = ()
    profile: str | None = None
    width: int | None = None
    height: int | None = None
    nominal_fps: float | None = None
    out_of_band_parameter_sets: bool = False
    """The SDP (``sprop-parameter-sets``) carried SPS/PPS."""
    reorder_delay: int = 0
    """The decoder's reorder delay (``has_b_frames``): above 0 means B-frames."""
    read_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Advice:
    """One finding for the person setting the camera up."""

    level: Level
    text: str


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """The probe's findings, ready to show."""

    codec: str
    codec_name: str
    profile: str | None
    width: int | None
    height: int | None
    fps: float | None
    keyframe_interval_s: float | None
    keyframe_interval_at_least: bool
    """Only one keyframe was seen: the interval is at least ``keyframe_interval_s``."""
    gop_frames: int | None
    b_frames: bool
    parameter_sets: ParameterSetPlace
    advice: tuple[Advice, ...]

    @property
    def ready(self) -> bool:
        """Whether nothing needs changing (no warning, no error)."""
        return all(a.level in ("ok", "info") for a in self.advice)

    def public(self) -> dict[str, object]:
        """The report as JSON."""
        return {**asdict(self), "advice": [asdict(a) for a in self.advice], "ready": self.ready}


# -- pure analysis ----------------------------------------------------------------------------


def _seconds(ticks: float, time_base: Fraction) -> float:
    return float(ticks * time_base)


def measured_fps(packets: Sequence[PacketFacts], time_base: Fraction) -> float | None:
    """Frames per second from the packets' distinct timestamps (``None`` below 3 frames)."""
    stamps = sorted({p.pts for p in packets if p.pts is not None})
    if len(stamps) < 3 or stamps[-1] == stamps[0]:
        return None
    return (len(stamps) - 1) / _seconds(stamps[-1] - stamps[0], time_base)


def keyframe_times(packets: Sequence[PacketFacts]) -> list[int]:
    """Timestamps of the keyframes, each counted once (multi-slice keyframes give several
    packets with one timestamp)."""
    found: list[int] = []
    for p in packets:
        if p.keyframe and p.pts is not None and (not found or p.pts != found[-1]):
            found.append(p.pts)
    return found


def keyframe_interval(
    packets: Sequence[PacketFacts], time_base: Fraction
) -> tuple[float | None, bool]:
    """Seconds between keyframes, and whether that is only a lower bound: with fewer than two
    keyframes seen, the interval is at least the longest stretch read without one (before
    the keyframe or after it; the whole read without any). ``None`` without timestamps."""
    stamps = [p.pts for p in packets if p.pts is not None]
    if not stamps:
        return None, False
    keys = keyframe_times(packets)
    if len(keys) >= 2:
        gaps = [b - a for a, b in itertools.pairwise(keys)]
        return _seconds(statistics.median(gaps), time_base), False
    first, last = min(stamps), max(stamps)
    if len(keys) == 1:
        return _seconds(max(keys[0] - first, last - keys[0]), time_base), True
    return _seconds(last - first, time_base), True


def has_b_frames(packets: Sequence[PacketFacts], reorder_delay: int) -> bool:
    """Whether pictures arrive out of presentation order (B-frames)."""
    if reorder_delay > 0:
        return True
    highest: int | None = None
    for p in packets:
        if p.pts is None:
            continue
        if highest is not None and p.pts < highest:
            return True
        if p.dts is not None and p.dts != p.pts:
            return True
        highest = p.pts if highest is None else max(highest, p.pts)
    return False


def parameter_set_place(facts: ProbeFacts) -> ParameterSetPlace:
    """Where SPS/PPS travel: in the keyframes, only in the SDP, or nowhere seen."""
    if any(p.keyframe and p.parameter_sets for p in facts.packets):
        return "in-band"
    if facts.out_of_band_parameter_sets:
        return "out-of-band"
    return "missing"


def _advice(report: ProbeReport, facts: ProbeFacts) -> list[Advice]:
    found: list[Advice] = []
    if report.codec == "hevc":
        found.append(
            Advice(
                "warn",
                "This is an H.265 stream, which browsers cannot play. Use the camera's H.264 "
                "sub-stream for viewers (often …/Channels/102), or switch this stream to H.264 "
                "in the camera's video settings.",
            )
        )
    elif report.codec != "h264":
        found.append(
            Advice(
                "error",
                f"The camera sends {report.codec}, which KitchenCam cannot use. Switch the "
                "stream to H.264 in the camera's video settings.",
            )
        )
    interval, at_least = report.keyframe_interval_s, report.keyframe_interval_at_least
    if interval is None:
        found.append(Advice("error", "No video arrived. Check the address and the camera."))
    elif not keyframe_times(facts.packets):
        found.append(
            Advice(
                "error",
                f"No keyframe arrived in {interval:.0f} s. Set the camera's keyframe interval "
                f"to {MAX_KEYFRAME_INTERVAL_S:.0f} s or less (the I-frame or GOP setting).",
            )
        )
    elif interval > MAX_KEYFRAME_INTERVAL_S:
        frames = round(MAX_KEYFRAME_INTERVAL_S * report.fps) if report.fps else None
        setting = f" (an I-frame interval of {frames} at {report.fps:.0f} fps)" if frames else ""
        amount = f"at least {interval:.1f}" if at_least else f"{interval:.1f}"
        found.append(
            Advice(
                "warn",
                f"Keyframes come every {amount} s. Set the camera's keyframe interval to "
                f"{MAX_KEYFRAME_INTERVAL_S:.0f} s or less{setting}: viewers recover from a lost "
                "packet only at the next keyframe, and the checks sample keyframes.",
            )
        )
    if report.b_frames:
        found.append(
            Advice(
                "warn",
                "The stream uses B-frames, which browsers play with extra delay or stutter. "
                "Turn them off in the camera's encoder settings (often called B-frames, "
                "Smart Codec or H.264+).",
            )
        )
    if report.parameter_sets == "out-of-band":
        found.append(
            Advice(
                "ok",
                "The stream's parameter sets (SPS/PPS) come only in the session description, "
                "not in the stream. That is fine: KitchenCam puts them in front of every "
                "keyframe.",
            )
        )
    elif report.parameter_sets == "missing" and interval is not None:
        found.append(
            Advice(
                "error",
                "The stream carries no parameter sets (SPS/PPS), so no player can decode it. "
                "Check the camera's streaming settings or update its firmware.",
            )
        )
    if report.width and report.height and report.width * report.height > LARGE_PICTURE_PIXELS:
        found.append(
            Advice(
                "info",
                f"The picture is {report.width} x {report.height}; viewers on phones will load "
                "faster from a 1080p (or smaller) stream.",
            )
        )
    if not any(a.level in ("warn", "error") for a in found):
        found.append(Advice("ok", "The stream is ready for KitchenCam."))
    return found


def analyse(facts: ProbeFacts) -> ProbeReport:
    """The findings and advice for what a probe saw."""
    fps = measured_fps(facts.packets, facts.time_base) or facts.nominal_fps
    interval, at_least = keyframe_interval(facts.packets, facts.time_base)
    report = ProbeReport(
        codec=facts.codec,
        codec_name=CODEC_NAMES.get(facts.codec, facts.codec),
        profile=facts.profile,
        width=facts.width,
        height=facts.height,
        fps=round(fps, 2) if fps else None,
        keyframe_interval_s=round(interval, 2) if interval is not None else None,
        keyframe_interval_at_least=at_least,
        gop_frames=round(interval * fps) if interval is not None and fps and not at_least else None,
        b_frames=has_b_frames(facts.packets, facts.reorder_delay),
        parameter_sets=parameter_set_place(facts),
        advice=(),
    )
    return replace(report, advice=tuple(_advice(report, facts)))


def carries_parameter_sets(codec: str, data: bytes) -> bool:
    """Whether an Annex-B packet holds SPS/PPS (H.264) or VPS/SPS/PPS (H.265)."""
    if not h264.is_annexb(data):
        return False
    nals = h264.split_annexb(data)
    if codec == "h264":
        return any(h264.nal_type(n) in _H264_PARAMETER_SETS for n in nals)
    if codec == "hevc":
        return any(n and (n[0] >> 1) & 0x3F in _H265_PARAMETER_SETS for n in nals)
    return False


# -- the shell --------------------------------------------------------------------------------


def _h264_picture(extradata: bytes | None, packets: Sequence[bytes]) -> h264.SequenceParameterSet:
    cache = h264.ParameterSetCache.from_extradata(extradata)
    for data in packets:
        if not cache.sps and h264.is_annexb(data):
            for nal in h264.split_annexb(data):
                cache.remember(nal)
    if not cache.sps:
        raise h264.H264Error("no SPS")
    return h264.parse_sps(cache.sps[0])


def collect(target: IngestTarget, read_s: float = PROBE_READ_S) -> ProbeFacts:
    """Runs on a worker thread: open the stream, read packets for up to ``read_s`` or
    ``PROBE_KEYFRAMES`` keyframes, and describe what came; ``IngestError`` if it cannot."""
    try:
        container = av.open(
            target.url,
            mode="r",
            options=open_options(target),
            timeout=(target.open_timeout_s, target.read_timeout_s),
        )
    except Exception as err:
        raise translate(err) from None
    try:
        return _read(container, read_s)
    except IngestError:
        raise
    except Exception as err:
        raise translate(err) from None
    finally:
        container.close()


def _read(container: av.container.InputContainer, read_s: float) -> ProbeFacts:
    if not container.streams.video:
        raise IngestError(Reason.NO_VIDEO, "the camera's stream has no video")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    codec = ctx.name
    extradata = ctx.extradata
    out_of_band = bool(extradata) and carries_parameter_sets(codec, extradata or b"")
    time_base = stream.time_base or Fraction(1, 90_000)
    packets: list[PacketFacts] = []
    keyframe_data: list[bytes] = []
    keyframes: set[int] = set()
    started = time.monotonic()
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        data = bytes(packet)
        key = bool(packet.is_keyframe)
        packets.append(
            PacketFacts(packet.pts, packet.dts, key, carries_parameter_sets(codec, data))
        )
        if key and packet.pts is not None:
            keyframes.add(packet.pts)
            if len(keyframe_data) < PROBE_KEYFRAMES:
                keyframe_data.append(data)
        if len(keyframes) > PROBE_KEYFRAMES or (len(keyframes) == PROBE_KEYFRAMES and not key):
            break
        if time.monotonic() - started > read_s or len(packets) >= MAX_PACKETS:
            break
    profile, width, height = ctx.profile, ctx.width or None, ctx.height or None
    if codec == "h264":
        try:
            sps = _h264_picture(extradata, keyframe_data)
            profile, width, height = str(sps.profile), sps.width, sps.height
        except h264.H264Error:
            pass
    rate = stream.average_rate or stream.guessed_rate
    return ProbeFacts(
        codec=codec,
        time_base=time_base,
        packets=tuple(packets),
        profile=profile,
        width=width,
        height=height,
        nominal_fps=float(rate) if rate else None,
        out_of_band_parameter_sets=out_of_band,
        reorder_delay=int(ctx.has_b_frames or 0),
        read_s=time.monotonic() - started,
    )


class ProbeBusy(Exception):
    """Too many probes are running; try again in a moment."""


DEMO_PROBE_FRAMES = 2 * demo.GOP_FRAMES + 1
"""A demo camera's connection test encodes two groups of pictures, as a real probe reads."""


def demo_facts(address: StreamAddress) -> ProbeFacts:
    """Runs on a worker thread: what a connection test of a demo camera sees, measured on
    its real encoder output (two keyframe intervals of the scene)."""
    pictures = demo.coded_pictures(demo.scene_for(address), lambda t: t)
    packets: list[PacketFacts] = []
    info: StreamInfo | None = None
    for _, au, picture_info in pictures:
        info = picture_info
        pts = au.pts // (VIDEO_CLOCK_HZ // demo.FPS)
        packets.append(PacketFacts(pts, pts, au.keyframe, carries_parameter_sets("h264", au.data)))
        if len(packets) >= DEMO_PROBE_FRAMES:
            break
    assert info is not None
    return ProbeFacts(
        codec="h264",
        time_base=Fraction(1, demo.FPS),
        packets=tuple(packets),
        profile=info.profile,
        width=info.width,
        height=info.height,
        nominal_fps=float(demo.FPS),
        read_s=len(packets) / demo.FPS,
    )


class Prober:
    """Probes camera addresses that pass the address policy, a few at a time."""

    def __init__(self, policy: AddressPolicy, limit: int = MAX_CONCURRENT_PROBES) -> None:
        self._policy = policy
        self._slots = asyncio.Semaphore(limit)

    async def probe(
        self, url: str, username: str | None, password: str | None, transport: str = "tcp"
    ) -> ProbeReport:
        """Check ``url`` against the address policy (``AddressError``), then read the stream
        (``IngestError`` if it cannot be read; ``ProbeBusy`` when at the limit)."""
        address = parse_stream_url(url)
        ip = await self._policy.check(address)
        if demo.serves_demo(self._policy, address):
            return analyse(await asyncio.to_thread(demo_facts, address))
        target = IngestTarget(
            address.url_for(ip, username, password),
            transport,
            open_timeout_s=PROBE_OPEN_TIMEOUT_S,
            read_timeout_s=PROBE_READ_TIMEOUT_S,
        )
        if self._slots.locked():
            raise ProbeBusy("other camera tests are running; try again in a few seconds")
        async with self._slots:
            log.info("probing %s", redact(target.url))
            # The thread ends by itself: reading is bounded by PROBE_READ_S and the timeouts.
            facts = await asyncio.to_thread(collect, target)
        report = analyse(facts)
        log.info(
            "probed %s: %s %sx%s keyframes every %ss",
            address.url,
            report.codec,
            report.width,
            report.height,
            report.keyframe_interval_s,
        )
        return report
