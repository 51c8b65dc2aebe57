"""A per-process cache of answers for a moment, shared by everyone asking at once.

Public pages polled by a crowd (a restaurant's watch page with a thousand viewers asks for its
states every few seconds each) would otherwise cost Redis one read per viewer: with this, one
read per key per ``ttl_s`` per web process, and concurrent misses wait for the same load.
Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

T = TypeVar("T")

DEFAULT_TTL_S: Final = 1.0
DEFAULT_MAX_KEYS: Final = 10_000


class ShortCache(Generic[T]):
    """Values by key for ``ttl_s`` seconds; at most ``max_keys``, least recently stored out."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._values: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        """Forget every value (loads under way still finish for their askers)."""
        self._values.clear()

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        """The value of ``key``: cached if fresh, else from ``load()`` (one load per key at a
        time; its error reaches every asker and nothing is cached)."""
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(load())
            self._loading[key] = pending
            pending.add_done_callback(lambda done: self._loaded(key, done))
        # Shielded: one asker going away must not cancel the load for the others.
        return await asyncio.shield(pending)

    def _loaded(self, key: str, done: asyncio.Future[T]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if done.cancelled() or done.exception() is not None:
            return
        self._values[key] = (time.monotonic() + self.ttl_s, done.result())
        self._values.move_to_end(key)
        while len(self._values) > self.max_keys:
            self._values.popitem(last=False)
