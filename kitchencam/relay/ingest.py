"""The demux worker: one dedicated thread per camera that pulls RTSP with PyAV.

The thread only opens, demuxes and fixes up; it hands access units to the event loop with
``loop.call_soon_threadsafe`` and ends by raising an ``IngestError`` (translated from PyAV's
errors, credentials never in a message). Its supervisor decides whether and when to retry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error

from kitchencam.logs import redact
from kitchencam.relay import h264
from kitchencam.relay.media import VIDEO_CLOCK_HZ, AccessUnit, Reason, StreamInfo
from kitchencam.relay.timestamps import TimestampValidator

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 5.0
ANALYZE_DURATION_US = 1_000_000
PROBE_SIZE_BYTES = 1_000_000
PROTOCOL_WHITELIST = "rtsp,rtsps,tcp,tls,udp,rtp,srtp"
SUPPORTED_CODECS = ("h264", "hevc")


class IngestError(Exception):
    """Why an ingest ended; ``reason`` is one of ``Reason``, the message is safe to show."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class IngestTarget:
    """What to pull: the connect URL (the checked IP, credentials encoded) and how."""

    url: str
    transport: str = "tcp"
    open_timeout_s: float = OPEN_TIMEOUT_S
    read_timeout_s: float = READ_TIMEOUT_S

    def __repr__(self) -> str:
        return f"IngestTarget({redact(self.url)!r}, {self.transport})"


class IngestSink:
    """Where the worker's output goes; every method is called on the event loop."""

    def __init__(
        self,
        on_session: Callable[[StreamInfo], None],
        on_unit: Callable[[AccessUnit, bool], None],
        on_info: Callable[[StreamInfo], None],
    ) -> None:
        self.on_session = on_session
        self.on_unit = on_unit
        self.on_info = on_info


def translate(err: BaseException) -> IngestError:
    """Our error for a PyAV/FFmpeg/OS error (messages carry no URL, so no credentials)."""
    if isinstance(err, IngestError):
        return err
    name = type(err).__name__
    if isinstance(err, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return IngestError(Reason.UNAUTHORIZED, "the camera refused the user name or password")
    if isinstance(err, av.error.HTTPNotFoundError):
        return IngestError(Reason.NOT_FOUND, "the camera has no stream at this path")
    if isinstance(err, ConnectionRefusedError):
        return IngestError(Reason.CONNECTION_REFUSED, "nothing listens at the camera's port")
    if isinstance(err, TimeoutError | av.error.ExitError):
        # PyAV's open/read timeouts interrupt FFmpeg, which reports an "exit" request.
        return IngestError(Reason.TIMEOUT, "the camera did not answer or stopped sending")
    if isinstance(err, av.error.EOFError | EOFError):
        return IngestError(Reason.STREAM_ENDED, "the camera closed the stream")
    if isinstance(err, av.error.InvalidDataError):
        return IngestError(Reason.BAD_STREAM, "the camera sent data that is not a valid stream")
    if isinstance(err, av.error.HTTPClientError | av.error.HTTPServerError):
        return IngestError(Reason.ERROR, f"the camera answered with an error ({name})")
    if isinstance(err, OSError):
        return IngestError(Reason.CONNECTION_REFUSED, f"cannot reach the camera ({name})")
    return IngestError(Reason.ERROR, name)


def open_options(target: IngestTarget) -> dict[str, str]:
    """FFmpeg options for an RTSP pull: transport, video only, no local files or other
    protocols, bounded probing."""
    return {
        "rtsp_transport": target.transport,
        "allowed_media_types": "video",
        "protocol_whitelist": PROTOCOL_WHITELIST,
        "analyzeduration": str(ANALYZE_DURATION_US),
        "probesize": str(PROBE_SIZE_BYTES),
    }


def stream_info(
    codec: str, cache: h264.ParameterSetCache | None, extradata: bytes | None
) -> StreamInfo:
    """What the parameter sets say about the stream."""
    if cache is None or not cache.sps:
        return StreamInfo(codec=codec, extradata=extradata)
    try:
        sps = h264.parse_sps(cache.sps[0])
    except h264.H264Error:
        return StreamInfo(codec=codec, extradata=extradata)
    return StreamInfo(
        codec=codec,
        profile=str(sps.profile),
        profile_level_id=sps.profile_level_id,
        level=sps.level,
        width=sps.width,
        height=sps.height,
        extradata=extradata,
    )


class SourceWorker:
    """A camera source on a dedicated thread: it hands its output to an ``IngestSink`` on the
    loop until told to stop, and its future ends with the ``IngestError`` that stopped it.

    Subclasses provide ``_work`` (runs on the thread) and ``_error`` (translates what it
    raised)."""

    THREAD_PREFIX = "source"

    def __init__(self, camera_id: str, loop: asyncio.AbstractEventLoop, sink: IngestSink) -> None:
        self.camera_id = camera_id
        self._loop = loop
        self._sink = sink
        self._quit = threading.Event()
        self._done: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, name=f"{self.THREAD_PREFIX}-{camera_id}", daemon=True
        )

    def start(self) -> asyncio.Future[None]:
        """Start the thread; the future ends with the ``IngestError`` that stopped it."""
        self._thread.start()
        return self._done

    def stop(self) -> None:
        """Ask the thread to stop after the unit it is working on."""
        self._quit.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _work(self) -> None:
        """Runs on the thread until the source ends or ``_quit`` is set."""
        raise NotImplementedError

    def _error(self, err: BaseException) -> BaseException:
        """Runs on the thread: the error ``_work`` raised, as our own type."""
        return translate(err)

    def _run(self) -> None:
        """Runs on the source thread."""
        error: BaseException | None
        try:
            self._work()
            error = None
        except BaseException as err:
            error = self._error(err)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._finish, error)

    def _finish(self, error: BaseException | None) -> None:
        """Runs on the event loop."""
        if self._done.done():
            return
        if error is None:
            self._done.set_result(None)
        else:
            self._done.set_exception(error)


class IngestWorker(SourceWorker):
    """Pulls one camera on a dedicated thread until told to stop or the stream fails.

    ``stop`` takes effect after the packet being read (at most a read timeout)."""

    THREAD_PREFIX = "ingest"

    def __init__(
        self,
        camera_id: str,
        target: IngestTarget,
        loop: asyncio.AbstractEventLoop,
        sink: IngestSink,
    ) -> None:
        super().__init__(camera_id, loop, sink)
        self._target = target

    def _work(self) -> None:
        self._pull()

    def _emit(self, fn: Callable[..., None], *args: object) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    def _pull(self) -> None:
        """Runs on the ingest thread: open, demux, fix up, hand over."""
        t = self._target
        container = av.open(
            t.url,
            mode="r",
            options=open_options(t),
            timeout=(t.open_timeout_s, t.read_timeout_s),
        )
        try:
            if not container.streams.video:
                raise IngestError(Reason.NO_VIDEO, "the camera's stream has no video")
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            if codec not in SUPPORTED_CODECS:
                raise IngestError(
                    Reason.UNSUPPORTED_CODEC, f"{codec} is not supported; use H.264 (or H.265)"
                )
            self._demux(container, stream, codec)
        finally:
            container.close()

    def _demux(
        self, container: av.container.InputContainer, stream: av.VideoStream, codec: str
    ) -> None:
        extradata = stream.codec_context.extradata
        cache = h264.ParameterSetCache.from_extradata(extradata) if codec == "h264" else None
        avcc = codec == "h264" and h264.parse_extradata(extradata).is_avcc
        time_base = stream.time_base or Fraction(1, VIDEO_CLOCK_HZ)
        validator = TimestampValidator(time_base)
        info = stream_info(codec, cache, extradata)
        self._emit(self._sink.on_session, info)
        pending: list[bytes] = []
        pending_pts: int | None = None
        pending_key = False
        started = False
        discontinuity = False

        def flush() -> None:
            nonlocal pending, pending_key, started, discontinuity
            if pending and pending_pts is not None and (started or pending_key):
                started = True
                au = AccessUnit(
                    data=b"".join(pending),
                    keyframe=pending_key,
                    pts=int(pending_pts * time_base * VIDEO_CLOCK_HZ),
                    arrival=time.monotonic(),
                )
                self._emit(self._sink.on_unit, au, discontinuity)
                discontinuity = False
            pending, pending_key = [], False

        for packet in container.demux(stream):
            if self._quit.is_set():
                return
            if packet.size == 0:
                continue
            # Cameras without B-frames are fine with pts alone (FFmpeg's RTSP demuxer gives
            # no dts until the first RTCP sender report), so only discontinuities matter.
            check = validator.check(packet.pts, packet.dts)
            data = bytes(packet)
            if cache is not None:
                if avcc:
                    data = h264.avcc_to_annexb(data)
                fixed = cache.fix(data)
                data, key = fixed.data, fixed.join_point
                if fixed.parameter_sets_changed:
                    new_info = stream_info(codec, cache, extradata)
                    if new_info != info:
                        info = new_info
                        self._emit(self._sink.on_info, info)
            else:
                key = bool(packet.is_keyframe)
            pts = packet.pts
            if pts is not None and pending_pts is not None and pts != pending_pts:
                flush()
            if check.discontinuity:
                discontinuity = True
            if pts is not None:
                pending_pts = pts
            pending.append(data)
            pending_key = pending_key or key
        flush()
        raise IngestError(Reason.STREAM_ENDED, "the camera ended the stream")
