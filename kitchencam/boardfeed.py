"""Live board updates: one reader of ``kc:board`` per web process, fanned out to SSE clients.

Checkers append every change of a published state to the capped stream ``kc:board`` in the
same ``MULTI`` as the state itself. Each web process runs one :class:`BoardFeed` reader that
polls the stream (a non-blocking ``XREAD`` every ``POLL_S``: a blocking read cancelled at
shutdown can leave redis-py's connection waiting, see ``roles.cancel_and_wait``) and hands
each change to every connected board through a bounded queue per client. A client that falls
``QUEUE_LENGTH`` changes behind loses its queue and gets one ``resync`` message instead (it
reloads its table); drops are counted.

Stream entry ids are the SSE event ids: a client that reconnects with ``Last-Event-ID`` (or a
page that connects with the id it was rendered at) gets the changes after it from the stream
itself (:meth:`BoardFeed.replay`), or a ``resync`` when they were trimmed away. Runs on the
event loop.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from kitchencam import keys, redisconn
from kitchencam.compliance.records import entry_order

log = logging.getLogger(__name__)

POLL_S: Final = 1.0
"""How often the reader looks for new changes when there were none (one cheap ``XREAD``)."""
BATCH: Final = 500
"""Changes read per ``XREAD``; a full batch is followed by another read at once."""
QUEUE_LENGTH: Final = 1000
"""Changes one client may fall behind before it is told to resync."""
REPLAY_MAX: Final = 5000
"""Most changes replayed to a resuming client; more than that and it resyncs instead."""
KEEPALIVE_S: Final = 15.0
"""Seconds between SSE comments on an idle stream (keeps proxies from closing it)."""
RETRY_MS: Final = 3000
"""What browsers are told to wait before reconnecting a dropped stream."""


class Signal(enum.Enum):
    """Control messages in a client's queue."""

    RESYNC = "resync"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class Change:
    """One ``kc:board`` entry: a camera's new published state (``state`` empty: deleted)."""

    id: str
    fields: dict[str, str]

    def message(self) -> bytes:
        """The change as an SSE ``state`` event."""
        data = {
            "camera_id": self.fields.get("camera", ""),
            "restaurant_id": self.fields.get("restaurant", ""),
            "district": self.fields.get("district", ""),
            "state": self.fields.get("state", ""),
            "since": _float(self.fields.get("since", "")),
            "cause": self.fields.get("cause", ""),
            "detail": self.fields.get("detail", ""),
        }
        return sse("state", json.dumps(data, separators=(",", ":")), self.id)


def _float(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def sse(event: str, data: str, event_id: str | None = None) -> bytes:
    """One server-sent event (``data`` must be a single line, e.g. compact JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    """One connected board: its bounded queue of changes and signals."""

    queue: asyncio.Queue[Change | Signal] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LENGTH)
    )

    def offer(self, item: Change | Signal) -> bool:
        """Queue ``item``; when the queue is full, empty it and queue ``item`` after a
        ``RESYNC`` instead (returns ``False`` then: the client lost changes)."""
        try:
            self.queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            pass
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(Signal.RESYNC)
        if isinstance(item, Signal):
            self.queue.put_nowait(item)
        return False


class BoardFeed:
    """Reads ``kc:board`` and fans each change out to every subscriber."""

    def __init__(self, redis: Redis, *, poll_s: float = POLL_S) -> None:
        self.redis = redis
        self.poll_s = poll_s
        self.position = "0-0"
        """The newest entry handed to subscribers (older ones come from :meth:`replay`)."""
        self.subscribers: set[Subscriber] = set()
        self.closed = False
        self.delivered = 0
        self.resyncs = 0
        self._started = asyncio.Event()

    # -- the reader -----------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the stream until cancelled; survives Redis outages (missed entries are read
        when Redis answers again, unless trimmed meanwhile)."""
        outage = redisconn.RedisOutage("board feed", log)
        while True:
            try:
                if not self._started.is_set():
                    self.position = await self.latest()
                    self._started.set()
                got = await self.read_once()
                outage.recovered()
                if got < BATCH:
                    await asyncio.sleep(self.poll_s)
            except redisconn.UNAVAILABLE_ERRORS as err:
                await asyncio.sleep(outage.failed(err))

    async def started(self) -> None:
        """Wait until the reader knows where the stream ends."""
        await self._started.wait()

    async def latest(self) -> str:
        """The id of the stream's newest entry (``0-0`` when it has none)."""
        newest: Any = await self.redis.xrevrange(keys.BOARD, count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def read_once(self) -> int:
        """Read the changes after ``position`` (one batch) and fan them out; return how many."""
        got: Any = await self.redis.xread({keys.BOARD: self.position}, count=BATCH)
        entries = [
            Change(str(eid), dict(data)) for _, messages in got or [] for eid, data in messages
        ]
        # No await from here on: subscribing and fan-out never interleave (see subscribe()).
        for change in entries:
            self.position = change.id
            for sub in self.subscribers:
                if not sub.offer(change):
                    self.resyncs += 1
            self.delivered += 1
        return len(entries)

    # -- subscribers ----------------------------------------------------------------------

    def subscribe(self) -> tuple[Subscriber, str]:
        """A new subscriber and the ``position`` it starts after: changes up to it come from
        :meth:`replay`, later ones through its queue."""
        sub = Subscriber()
        if self.closed:
            sub.offer(Signal.CLOSE)
        self.subscribers.add(sub)
        return sub, self.position

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a subscriber (its stream ended)."""
        self.subscribers.discard(sub)

    async def replay(self, after: str, upto: str) -> list[Change] | None:
        """The changes after ``after`` up to ``upto``, or ``None`` when some of them were
        trimmed from the stream (or are too many): the client must resync."""
        try:
            entry_order(after)
        except ValueError:
            return None
        if entry_order(after) >= entry_order(upto):
            return []
        if await self._trimmed_after(after):
            return None
        got: Any = await self.redis.xrange(keys.BOARD, f"({after}", upto, count=REPLAY_MAX + 1)
        if len(got) > REPLAY_MAX:
            return None
        return [Change(str(eid), dict(data)) for eid, data in got]

    async def _trimmed_after(self, after: str) -> bool:
        """Whether entries after ``after`` may have been trimmed away. ``after`` is an id the
        stream held (a client saw it), so it is gone when the oldest entry left is newer;
        ``0-0`` (the stream was empty) is safe until the stream has reached its cap."""
        try:
            info: Any = await self.redis.xinfo_stream(keys.BOARD)
        except ResponseError:  # no stream yet: nothing was trimmed
            return False
        if after == "0-0":
            return int(info.get("length", 0)) >= keys.BOARD_MAXLEN
        first = info.get("first-entry")
        return first is not None and entry_order(str(first[0])) > entry_order(after)

    def close(self) -> None:
        """End every stream (app shutdown): each client gets a ``CLOSE`` signal."""
        self.closed = True
        for sub in self.subscribers:
            sub.offer(Signal.CLOSE)


class FeedCollector:
    """Prometheus collector for the board feed of this process."""

    def __init__(self, feed: BoardFeed) -> None:
        self.feed = feed

    def collect(self) -> Iterator[Metric]:
        """Connected boards, changes read, and resyncs forced on lagging clients."""
        yield GaugeMetricFamily(
            "kitchencam_board_streams",
            "Regulators' boards connected to this process over server-sent events.",
            value=len(self.feed.subscribers),
        )
        yield CounterMetricFamily(
            "kitchencam_board_changes",
            "State changes this process read from kc:board.",
            value=self.feed.delivered,
        )
        yield CounterMetricFamily(
            "kitchencam_board_resyncs",
            "Times a board fell too far behind and was told to reload its table.",
            value=self.feed.resyncs,
        )
