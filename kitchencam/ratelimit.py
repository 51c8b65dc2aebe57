"""Token buckets per client (pure): how many requests a client may make, refilled over time.

A bucket holds up to ``capacity`` tokens and gains ``rate_per_s`` tokens a second; a request
takes one token or is refused with the seconds until the next token. Buckets live in a
bounded LRU map: a client not seen for longer than a full refill has a full bucket anyway, so
forgetting the least recently seen client when the map is full loses nothing that matters.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

MAX_CLIENTS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by client (e.g. its IP address); the caller supplies the clock."""

    def __init__(self, rate_per_min: float, max_clients: int = MAX_CLIENTS) -> None:
        self.capacity = float(rate_per_min)
        self.rate_per_s = rate_per_min / 60.0
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether any limit applies (a rate of 0 means none)."""
        return self.capacity > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float) -> float:
        """Take a token for ``client`` at time ``now`` (seconds); 0.0 when allowed, else the
        seconds to wait until a token is available."""
        if not self.enabled:
            return 0.0
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = _Bucket(self.capacity, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate_per_s)
            bucket.updated = now
        self._buckets[client] = bucket
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s


def retry_after_s(wait_s: float) -> int:
    """A ``Retry-After`` value (whole seconds, at least 1) for a wait of ``wait_s``."""
    return max(1, math.ceil(wait_s))
