"""One relay's leases: what it holds, renewals, claims, releases and its advertisement.

The relay hub drives it from one task (see ``RelayHub``); the compliance samplers use it as
their lease book (:meth:`Claims.fenced`, :meth:`Claims.refused`) so that every write about a
camera carries the camera's current lease. Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from kitchencam import keys
from kitchencam.relay.leases import Advert, FencedBatch, Lease, LeaseLost, LeaseStore, parse_lease

log = logging.getLogger(__name__)

RENEWALS_PER_TTL: Final = 3
"""Renewals per lease TTL: a relay survives two lost or late renewals before losing a lease."""


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """How this relay takes part: its id, advertised URL, capacity and lease TTL."""

    relay_id: str
    url: str
    capacity: int
    ttl_s: float

    @property
    def renew_s(self) -> float:
        """Seconds between two renewals (and the wait before claiming after a (re)connection)."""
        return self.ttl_s / RENEWALS_PER_TTL


@dataclass(frozen=True, slots=True)
class Loss:
    """A lease this relay no longer holds, and why."""

    camera_id: str
    why: str


class Claims:
    """The leases one relay holds, with counters for ``/metrics``."""

    def __init__(
        self,
        store: LeaseStore,
        policy: LeasePolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.policy = policy
        self._clock = clock
        self.held: dict[str, Lease] = {}
        self.adverts: dict[str, Advert] = {}
        """Live relays' advertisements seen at the last renewal (this one's included)."""
        self.claimed = 0
        self.lost = 0
        self.handed_over = 0
        self.wake = asyncio.Event()
        """Set when the hub should scan now (new cameras, a refused write)."""
        self._next_renew = 0.0
        self._claim_after: float | None = None

    def capacities(self, now: float | None = None) -> dict[str, int]:
        """Capacities of the relays live now, this one included: an advertisement that ran out
        since the last renewal (its relay died) no longer counts."""
        now = time.time() if now is None else now
        live = {r: a.capacity for r, a in self.adverts.items() if a.until > now and a.capacity}
        live[self.policy.relay_id] = self.policy.capacity
        return live

    @property
    def relay_id(self) -> str:
        """This relay's id (its instance name)."""
        return self.policy.relay_id

    def lease(self, camera_id: str) -> Lease | None:
        """The lease held on ``camera_id``, if any."""
        return self.held.get(camera_id)

    # -- the samplers' lease book ----------------------------------------------------------

    def fenced(self, camera_id: str) -> FencedBatch:
        """An empty batch of writes about ``camera_id`` fenced by its lease; ``LeaseLost`` if
        this relay holds none."""
        lease = self.held.get(camera_id)
        if lease is None:
            raise LeaseLost(camera_id)
        return self.store.batch(lease)

    def refused(self, camera_id: str) -> None:
        """A fenced write about ``camera_id`` was refused: renew (and so decide) at once."""
        log.warning("camera %s: a write was refused by its lease; checking the lease", camera_id)
        self._next_renew = 0.0
        self.wake.set()

    async def run_fenced(self, batches: Sequence[FencedBatch]) -> None:
        """Run many fenced batches in one round trip; report each refused one."""
        for batch in await self.store.run_batches(batches):
            self.refused(batch.lease.camera_id)

    # -- driven by the hub -----------------------------------------------------------------

    def renew_due(self) -> bool:
        """Whether renewing is due (always, right after a refusal or a lost connection)."""
        return self._clock() >= self._next_renew

    def may_claim(self) -> bool:
        """Whether claiming free cameras is allowed: one renewal interval after (re)connecting,
        so that relays still holding cameras re-assert their leases first."""
        return self._claim_after is not None and self._clock() >= self._claim_after

    def disconnected(self) -> None:
        """Redis did not answer: renew first and wait before claiming once it answers again."""
        self._claim_after = None
        self._next_renew = 0.0

    async def renew(self) -> list[Loss]:
        """Renew every lease (re-claiming vanished ones) and advertise; the leases lost."""
        policy = self.policy
        losses: list[Loss] = []
        for renewal in await self.store.renew(list(self.held.values()), policy.ttl_s):
            lease = renewal.lease
            cid = lease.camera_id
            if renewal.renewed or self.held.get(cid) != lease:
                continue  # renewed, or released meanwhile
            why = await self._reclaim(lease) if renewal.other is None else renewal.other
            if why is None:
                continue
            self.held.pop(cid, None)
            self.lost += 1
            losses.append(Loss(cid, f"lease now held by {why}"))
            log.warning("camera %s: lease lost (ours: fence %s; now: %s)", cid, lease.fence, why)
        await self.advertise()
        now = self._clock()
        self._next_renew = now + policy.renew_s
        if self._claim_after is None:
            self._claim_after = now + policy.renew_s
        return losses

    async def _reclaim(self, lease: Lease) -> str | None:
        """Our lease vanished (Redis restarted or lost it): take it again if still free;
        None when re-claimed, else who holds it now."""
        cid = lease.camera_id
        again = await self.store.claim(cid, self.relay_id, self.policy.ttl_s)
        if again is not None:
            if self.held.get(cid) == lease:
                self.held[cid] = again
            log.warning(
                "camera %s: lease had vanished; re-claimed (fence %s -> %s)",
                cid,
                lease.fence,
                again.fence,
            )
            return None
        current = await self.store.redis.get(keys.lease(cid))
        parsed = parse_lease(str(current) if current is not None else None)
        return parsed[0] if parsed else "another relay"

    async def advertise(self) -> None:
        """Publish where this relay answers and what it holds; refresh the live relays'
        capacities."""
        policy = self.policy
        self.adverts = await self.store.advertise(
            policy.relay_id, policy.url, policy.capacity, len(self.held), policy.ttl_s
        )

    async def free(self, camera_ids: Sequence[str]) -> list[str]:
        """Which of ``camera_ids`` (not held here) no relay holds."""
        return await self.store.free([c for c in camera_ids if c not in self.held])

    async def claim(self, camera_id: str) -> Lease | None:
        """Try to take a free camera's lease."""
        lease = await self.store.claim(camera_id, self.relay_id, self.policy.ttl_s)
        if lease is not None:
            self.held[camera_id] = lease
            self.claimed += 1
            log.info("camera %s: lease claimed (fence %s)", camera_id, lease.fence)
        return lease

    async def release(self, camera_id: str, *, hand_over: bool = False) -> None:
        """Give up the lease on ``camera_id`` (after its pull has stopped)."""
        lease = self.held.pop(camera_id, None)
        if lease is None:
            return
        if hand_over:
            self.handed_over += 1
        released = await self.store.release(lease)
        log.info(
            "camera %s: lease %s (fence %s)",
            camera_id,
            ("handed over" if hand_over else "released") if released else "already gone",
            lease.fence,
        )

    async def release_all(self) -> None:
        """Give up every lease and the advertisement at once (the relay is stopping)."""
        leases = list(self.held.values())
        self.held.clear()
        await self.store.release_all(leases)
        await self.store.withdraw(self.relay_id)
        log.info("relay %s: released %d leases and its advertisement", self.relay_id, len(leases))
