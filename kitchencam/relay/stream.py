"""One camera's live stream in memory: the current group of pictures, viewers, and figures.

Everything here runs on the event loop thread. Access units are shared by every viewer;
each viewer has a bounded queue of references to them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable

from kitchencam.relay.media import (
    VIDEO_CLOCK_HZ,
    AccessUnit,
    IngestStatus,
    StreamInfo,
    StreamObserver,
)

log = logging.getLogger(__name__)

GOP_MAX_UNITS = 600  # 24 s at 25 fps: longer GOPs are not cached (viewers wait for a keyframe)
GOP_MAX_BYTES = 32 * 1024 * 1024
VIEWER_LIVE_BACKLOG = 60  # units a viewer may lag behind live before it skips to a keyframe
RATE_WINDOW_S = 5.0
DEFAULT_FRAME_TICKS = 3600  # 40 ms at 90 kHz: the gap left between two upstream sessions


class ViewerQueue:
    """A bounded queue of access units for one viewer.

    It starts with the camera's cached group of pictures, then receives live units. A viewer
    that lags more than ``VIEWER_LIVE_BACKLOG`` units behind live drops what it holds and
    resumes at the next keyframe; drops are counted, and memory never grows past the bound.
    """

    def __init__(self, backlog: int = VIEWER_LIVE_BACKLOG) -> None:
        self._units: collections.deque[AccessUnit] = collections.deque()
        self._limit = backlog
        self._ready = asyncio.Event()
        self._waiting_for_keyframe = True
        self.dropped = 0
        self.delivered = 0
        self.closed = False

    def prime(self, gop: Iterable[AccessUnit]) -> None:
        """Start with the cached group of pictures (it begins with a keyframe)."""
        units = list(gop)
        if units and units[0].keyframe:
            self._units.extend(units)
            self._limit = len(units) + self._limit
            self._waiting_for_keyframe = False
            self._ready.set()

    def put(self, au: AccessUnit) -> None:
        """Offer a live unit (called for every unit of the camera)."""
        if self.closed:
            return
        if self._waiting_for_keyframe:
            if not au.keyframe:
                self.dropped += 1
                return
            self._waiting_for_keyframe = False
        if len(self._units) >= self._limit:
            self.dropped += len(self._units) + 1
            self._units.clear()
            self._limit = VIEWER_LIVE_BACKLOG
            if not au.keyframe:
                self._waiting_for_keyframe = True
                return
        self._units.append(au)
        self._ready.set()

    def restart(self) -> None:
        """The camera's stream started over: wait for its first keyframe."""
        self.dropped += len(self._units)
        self._units.clear()
        self._waiting_for_keyframe = True

    async def get(self) -> AccessUnit:
        """The next unit; waits for one. Raises ``EOFError`` once closed."""
        while not self._units:
            if self.closed:
                raise EOFError("viewer closed")
            self._ready.clear()
            await self._ready.wait()
        self.delivered += 1
        if len(self._units) == 1:
            self._limit = min(self._limit, VIEWER_LIVE_BACKLOG)
        return self._units.popleft()

    def close(self) -> None:
        """No more units; a waiting ``get`` raises ``EOFError``."""
        self.closed = True
        self._units.clear()
        self._ready.set()

    def __len__(self) -> int:
        return len(self._units)


class _Rate:
    """Events and bytes per second of media time, over a sliding window."""

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._bytes = 0

    def add(self, now: float, size: int) -> None:
        self._samples.append((now, size))
        self._bytes += size
        while self._samples and now - self._samples[0][0] > RATE_WINDOW_S:
            self._bytes -= self._samples.popleft()[1]

    def per_second(self) -> tuple[float, float]:
        """(events/s, bytes/s) over the window."""
        if len(self._samples) < 2:
            return 0.0, 0.0
        span = max(self._samples[-1][0] - self._samples[0][0], 1e-3)
        return (len(self._samples) - 1) / span, (self._bytes - self._samples[0][1]) / span


class Timeline:
    """Maps each upstream session's timestamps onto one continuous, increasing 90 kHz clock,
    so viewers that outlive a reconnect see time go on instead of jumping back."""

    def __init__(self, gap: int = DEFAULT_FRAME_TICKS) -> None:
        self._offset: int | None = None
        self._last: int | None = None
        self._gap = gap

    def restart(self) -> None:
        """The next timestamp starts a new segment just after the last one."""
        self._offset = None

    def map(self, pts: int) -> int:
        """The continuous timestamp for an upstream ``pts`` (90 kHz)."""
        if self._offset is None:
            start = 0 if self._last is None else self._last + self._gap
            self._offset = start - pts
        out = pts + self._offset
        if self._last is not None and out <= self._last:
            out = self._last + 1
        self._last = out
        return out


class CameraStream:
    """The live state of one camera's stream: GOP cache, viewers, observers, figures."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.info: StreamInfo | None = None
        self.status: IngestStatus | None = None
        self._gop: list[AccessUnit] = []
        self._gop_bytes = 0
        self._viewers: set[ViewerQueue] = set()
        self._observers: list[StreamObserver] = []
        self._rate = _Rate()
        self._last_keyframe: float | None = None
        self.keyframe_interval_s: float | None = None
        self.last_packet_monotonic: float | None = None
        self.last_packet_wall: float | None = None
        self.units_total = 0
        self.bytes_total = 0
        self.viewer_drops_total = 0
        self.reconnects = 0
        self._sessions = 0
        self._timeline = Timeline()

    # -- fed by the ingest ---------------------------------------------------------------

    def begin_session(self, info: StreamInfo) -> None:
        """A new upstream session starts: forget the old GOP, make viewers wait for a keyframe."""
        if self._sessions:
            self.reconnects += 1
        self._sessions += 1
        self.info = info
        self._gop, self._gop_bytes = [], 0
        self._last_keyframe = None
        self._timeline.restart()
        for viewer in self._viewers:
            viewer.restart()

    def publish(self, au: AccessUnit, discontinuity: bool = False) -> None:
        """Hand a new access unit to the cache, every viewer and every observer."""
        if discontinuity:
            self._timeline.restart()
        au.pts = self._timeline.map(au.pts)
        now = au.arrival
        self.units_total += 1
        self.bytes_total += len(au.data)
        self.last_packet_monotonic = now
        self.last_packet_wall = time.time()
        media_s = au.pts / VIDEO_CLOCK_HZ
        self._rate.add(media_s, len(au.data))
        if au.keyframe:
            if self._last_keyframe is not None:
                self.keyframe_interval_s = now - self._last_keyframe
            self._last_keyframe = now
            self._gop, self._gop_bytes = [au], len(au.data)
        elif self._gop:
            if len(self._gop) < GOP_MAX_UNITS and self._gop_bytes < GOP_MAX_BYTES:
                self._gop.append(au)
                self._gop_bytes += len(au.data)
            else:
                self._gop, self._gop_bytes = [], 0
        for viewer in self._viewers:
            viewer.put(au)
        if self.info is not None:
            for observer in self._observers:
                observer.on_access_unit(au, self.info)

    def set_status(self, status: IngestStatus) -> None:
        """Record the ingest's new state and tell the observers."""
        self.status = status
        for observer in self._observers:
            observer.on_status(status)

    # -- viewers and observers ------------------------------------------------------------

    def add_viewer(self, backlog: int = VIEWER_LIVE_BACKLOG) -> ViewerQueue:
        """A new viewer, primed with the current GOP so its first picture comes at once.

        The viewer is registered and primed in one step on the loop thread, so no unit
        published in between can be missed.
        """
        viewer = ViewerQueue(backlog)
        viewer.prime(self._gop)
        self._viewers.add(viewer)
        return viewer

    def remove_viewer(self, viewer: ViewerQueue) -> None:
        """Forget a viewer (its drops stay counted)."""
        if viewer in self._viewers:
            self._viewers.discard(viewer)
            self.viewer_drops_total += viewer.dropped
            viewer.close()

    def add_observer(self, observer: StreamObserver) -> None:
        """Follow this stream (compliance sampling)."""
        self._observers.append(observer)
        if self.status is not None:
            observer.on_status(self.status)

    @property
    def viewers(self) -> int:
        """How many viewers watch now."""
        return len(self._viewers)

    @property
    def gop_units(self) -> int:
        """Units in the cached group of pictures."""
        return len(self._gop)

    def dropped(self) -> int:
        """Units dropped for slow viewers, ever."""
        return self.viewer_drops_total + sum(v.dropped for v in self._viewers)

    def figures(self, now: float | None = None) -> dict[str, object]:
        """Per-camera figures for the API and ``/metrics``."""
        now = time.monotonic() if now is None else now
        fps, bytes_per_s = self._rate.per_second()
        info = self.info
        status = self.status
        return {
            "state": status.state.value if status else "starting",
            "reason": status.reason.value if status and status.reason else None,
            "detail": status.detail if status else "",
            "since": status.time if status else None,
            "codec": info.codec if info else None,
            "profile": info.profile if info else None,
            "level": info.level if info else None,
            "width": info.width if info else None,
            "height": info.height if info else None,
            "fps": round(fps, 2),
            "bitrate_bps": round(bytes_per_s * 8),
            "keyframe_interval_s": (
                round(self.keyframe_interval_s, 3) if self.keyframe_interval_s else None
            ),
            "last_packet_age_s": (
                round(now - self.last_packet_monotonic, 3)
                if self.last_packet_monotonic is not None
                else None
            ),
            "reconnects": self.reconnects,
            "dropped_units": self.dropped(),
            "viewers": self.viewers,
        }

    def close(self) -> None:
        """End every viewer."""
        for viewer in list(self._viewers):
            self.remove_viewer(viewer)
