"""What flows out of one camera's ingest: access units, stream facts, and connection news."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

VIDEO_CLOCK_HZ = 90_000  # RTP clock of video


@dataclass(slots=True, eq=False)
class AccessUnit:
    """One coded picture, Annex-B, with SPS/PPS in front when it is a keyframe.

    Shared by every viewer of the camera: never mutate ``data``. ``pts`` is on the camera
    stream's continuous 90 kHz timeline (rebased across reconnects); ``arrival`` is the
    monotonic clock time it was demuxed.
    """

    data: bytes
    keyframe: bool
    pts: int
    arrival: float
    payloads: list[bytes] | None = field(default=None, repr=False)
    """RTP payloads, packetised once for every viewer by the first one that needs them."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """Facts about a camera's stream, from its parameter sets and its demuxer."""

    codec: str
    profile: str | None = None
    profile_level_id: str | None = None
    level: str | None = None
    width: int | None = None
    height: int | None = None
    extradata: bytes | None = field(default=None, repr=False)
    """The demuxer's codec extradata (needed to decode H.265; H.264 keyframes carry theirs)."""


class IngestState(enum.StrEnum):
    """Where a camera's ingest stands."""

    STARTING = "starting"
    CONNECTING = "connecting"
    LIVE = "live"
    STALLED = "stalled"
    RETRYING = "retrying"
    REFUSED = "refused"
    STOPPED = "stopped"


class Reason(enum.StrEnum):
    """Why an ingest is not live."""

    CONNECTION_REFUSED = "connection refused"
    TIMEOUT = "timeout"
    UNAUTHORIZED = "credentials rejected"
    NOT_FOUND = "not found"
    UNSUPPORTED_CODEC = "unsupported codec"
    NO_VIDEO = "no video"
    STREAM_ENDED = "stream ended"
    STALLED = "no packets"
    ADDRESS_REFUSED = "address refused by policy"
    BAD_STREAM = "invalid stream"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class IngestStatus:
    """A change in a camera's ingest, as its supervisor sees it."""

    state: IngestState
    time: float
    reason: Reason | None = None
    detail: str = ""
    last_packet: float | None = None
    """Wall-clock time (``time.time()``) of the last packet, if any arrived."""


class StreamObserver(Protocol):
    """Something that follows one camera's stream on the event loop (the compliance sampler).

    Both methods run on the event loop thread and must return quickly.
    """

    def on_access_unit(self, au: AccessUnit, info: StreamInfo) -> None:
        """A new access unit arrived."""

    def on_status(self, status: IngestStatus) -> None:
        """The ingest's state changed."""
