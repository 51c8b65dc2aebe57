"""How many cameras a relay should hold: fair shares, claims and hand-overs (pure, no I/O).

Every relay decides alone from what it can read cheaply: the enabled cameras, the live relays'
capacities (how many relays of each capacity, from the relays' summary) and what it holds. The
*fair share* is the smallest number of cameras per relay that, with each relay capped at its
capacity, places every camera (the cameras divided by the relays, rounded up, when capacities
are equal and ample). A relay claims free cameras up to ``min(capacity, fair share)``, a few
per scan, and hands cameras over, one per scan, only while it holds more than ``fair share +
1`` (or more than its capacity): the slack of one keeps cameras from bouncing between relays
whose shares differ by rounding, and the one-at-a-time pace lets a newly started relay pick
each camera up before the next one is let go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

MAX_CLAIMS_PER_SCAN: Final = 20
"""Cameras claimed per scan at most: a relay starting next to many free cameras opens them a
few at a time, and relays starting together interleave their claims."""

HAND_OVERS_PER_SCAN: Final = 1
"""Cameras handed over per scan at most (gradual: each hand-over cuts that camera's viewers)."""

SLACK: Final = 1
"""Cameras a relay may hold above its fair share before it hands any over."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one scan should do: claim up to ``claim`` free cameras, hand ``hand_over`` over."""

    claim: int
    hand_over: int


def fair_share(cameras: int, capacities: Mapping[int, int]) -> int:
    """The smallest share ``f`` such that the live relays (``capacities``: capacity -> how
    many relays have it), each taking ``min(capacity, f)``, hold every camera; when even full
    relays cannot, the largest capacity (all full)."""
    live = {c: n for c, n in capacities.items() if c > 0 and n > 0}
    if cameras <= 0 or not live:
        return max(cameras, 0)
    low, high = 0, max(live)
    while low < high:
        mid = (low + high) // 2
        if sum(n * min(c, mid) for c, n in live.items()) >= cameras:
            high = mid
        else:
            low = mid + 1
    return low


def plan(
    held: int,
    cameras: int,
    capacities: Mapping[int, int],
    capacity: int,
    *,
    max_claims: int = MAX_CLAIMS_PER_SCAN,
    max_hand_overs: int = HAND_OVERS_PER_SCAN,
) -> Plan:
    """What a relay holding ``held`` of ``cameras`` enabled cameras, with room for
    ``capacity``, among live relays with ``capacities`` (capacity -> relays, its own
    included), should do now."""
    fair = fair_share(cameras, capacities)
    target = min(capacity, fair)
    ceiling = min(capacity, fair + SLACK)
    if held > ceiling:
        return Plan(0, min(held - ceiling, max_hand_overs))
    return Plan(max(0, min(target - held, max_claims)), 0)


def claim_order(relay_id: str, free: Iterable[str]) -> list[str]:
    """Free cameras in this relay's own order of preference.

    Each relay ranks cameras by a hash of its id and the camera's, so relays scanning at the
    same moment mostly try different cameras instead of racing for the same ones.
    """
    return sorted(free, key=lambda cid: hashlib.blake2s(f"{relay_id}/{cid}".encode()).digest())


def hand_over_order(viewers: Mapping[str, int]) -> list[str]:
    """Held cameras in the order to hand them over: fewest viewers first (a hand-over cuts
    the viewers this relay serves; they reconnect through the new holder)."""
    return sorted(viewers, key=lambda cid: (viewers[cid], cid))
