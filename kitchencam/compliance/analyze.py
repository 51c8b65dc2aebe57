"""``kitchencam analyze SOURCE``: the checker's sampling, analysers and state machine on one
video file or camera, without Redis, one JSON line per sample.

Times are media time (seconds from the first packet), so a recording is judged exactly as a
live camera showing it would be, only faster. The reference view is approved automatically
once the picture is good, as for a registered camera. Runs on the calling thread.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, TextIO

import av

from kitchencam.addresses import AddressError, AddressPolicy, parse_stream_url
from kitchencam.compliance.frames import FrameError, KeyframeDecoder
from kitchencam.compliance.pipeline import CameraAnalysis
from kitchencam.compliance.sampler import INTERVAL_TOLERANCE
from kitchencam.compliance.states import Config, State
from kitchencam.settings import Settings

OPEN_TIMEOUT_S: Final = 10.0
READ_TIMEOUT_S: Final = 10.0
PROTOCOLS: Final = "rtsp,rtsps,tcp,udp,rtp,tls,crypto"
"""FFmpeg protocols a camera URL may use (no file:, http:, concat: behind an RTSP URL)."""


class AnalyzeError(Exception):
    """The source cannot be analysed; the message says why (without credentials)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One analysed sample: media time, state after it, what was measured, what changed."""

    t: float
    state: State
    measures: dict[str, float]
    transitions: list[dict[str, Any]]

    def line(self) -> str:
        """The JSON line ``analyze`` prints."""
        data: dict[str, Any] = {"t": round(self.t, 3), "state": self.state.value}
        data["measures"] = self.measures
        if self.transitions:
            data["transitions"] = self.transitions
        return json.dumps(data, separators=(",", ":"))


def is_url(source: str) -> bool:
    """Whether ``source`` names a camera rather than a file."""
    return "://" in source and not os.path.exists(source)


def open_source(
    source: str, settings: Settings, username: str | None = None, password: str | None = None
) -> Any:
    """Open a file, or a camera URL after the address policy checked it (connects to the IP
    that passed, with ``KITCHENCAM_ALLOW_NETWORKS`` as the allow-list)."""
    if not is_url(source):
        try:
            return av.open(source)
        except (av.FFmpegError, OSError) as err:
            raise AnalyzeError(f"cannot open {source}: {err}") from err
    address = parse_stream_url(source)
    policy = AddressPolicy(tuple(settings.allow_networks))
    ip = asyncio.run(policy.check(address))
    url = address.url_for(ip, username, password)
    try:
        return av.open(
            url,
            options={"rtsp_transport": "tcp", "protocol_whitelist": PROTOCOLS},
            timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S),
        )
    except (av.FFmpegError, OSError) as err:
        raise AnalyzeError(f"cannot open {address.url}: {type(err).__name__}") from err


def samples(
    container: Any,
    *,
    interval_s: float = 2.0,
    config: Config | None = None,
    max_seconds: float | None = None,
) -> Iterator[Sample]:
    """Sample a container's keyframes (at most one per interval) and analyse each."""
    if not container.streams.video:
        raise AnalyzeError("the source has no video")
    stream = container.streams.video[0]
    decoder = KeyframeDecoder(stream.codec_context.name, stream.codec_context.extradata)
    analysis = CameraAnalysis(config)
    start: float | None = None
    last: float | None = None
    try:
        for packet in container.demux(stream):
            if packet.pts is None or packet.time_base is None or packet.size == 0:
                continue
            t_abs = float(packet.pts * packet.time_base)
            if start is None:
                start = t_abs
                analysis.resume(0.0)
            t = t_abs - start
            if max_seconds is not None and t > max_seconds:
                return
            if not packet.is_keyframe:
                continue
            if last is not None and t - last < interval_s * INTERVAL_TOLERANCE:
                continue
            try:
                frame = decoder.decode(bytes(packet))
            except FrameError:
                continue
            last = t
            outcome = analysis.sample(t, frame)
            step = outcome.step
            measures: dict[str, float] = {}
            if step.verdict is not None:
                measures = dict(step.verdict.values)
            transitions = [
                {"from": tr.from_state.value, "to": tr.to_state.value, "cause": tr.cause}
                for tr in step.transitions
            ]
            if outcome.measures is not None:
                measures = outcome.measures.as_dict() | measures
            yield Sample(t, analysis.state, measures, transitions)
    except av.FFmpegError as err:
        raise AnalyzeError(f"reading the source failed: {type(err).__name__}") from err


def run(
    source: str,
    settings: Settings,
    out: TextIO,
    *,
    interval_s: float | None = None,
    max_seconds: float | None = None,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Print one JSON line per sample of ``source`` to ``out``."""
    try:
        container = open_source(source, settings, username, password)
    except AddressError as err:
        raise AnalyzeError(str(err)) from None
    try:
        for sample in samples(
            container,
            interval_s=interval_s or settings.sample_interval_s,
            max_seconds=max_seconds,
        ):
            out.write(sample.line() + "\n")
            out.flush()
    finally:
        container.close()
