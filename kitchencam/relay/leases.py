"""Camera leases in Redis: which relay pulls which camera, with a fencing token.

``kc:lease:{cid}`` holds ``"{relay_id} {fence}"`` and expires unless its relay renews it;
``kc:fence:{cid}`` counts claims, so every new holder gets a larger token. Relays advertise
where they answer signalling in ``kc:relay:{relay_id}`` (JSON with ``url``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from redis.asyncio import Redis

from kitchencam import keys


@dataclass(frozen=True, slots=True)
class Holder:
    """The relay holding a camera's lease, and where it answers signalling."""

    relay_id: str
    fence: int
    url: str | None


def parse_lease(value: str | None) -> tuple[str, int] | None:
    """``(relay_id, fence)`` from a lease value, or None for a missing or malformed one."""
    if not value:
        return None
    relay_id, _, fence = value.rpartition(" ")
    if not relay_id or not fence.isdigit():
        return None
    return relay_id, int(fence)


def lease_value(relay_id: str, fence: int) -> str:
    """The stored form of a lease."""
    return f"{relay_id} {fence}"


async def holder(redis: Redis, camera_id: str) -> Holder | None:
    """The relay that holds ``camera_id`` now, or None when no relay holds it."""
    raw = await redis.get(keys.lease(camera_id))
    lease = parse_lease(str(raw) if raw is not None else None)
    if lease is None:
        return None
    relay_id, fence = lease
    advert = await redis.get(keys.relay(relay_id))
    url = json.loads(str(advert)).get("url") if advert else None
    return Holder(relay_id, fence, url)
