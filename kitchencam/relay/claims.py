"""One relay's leases: what it holds, renewals, claims, releases and its advertisement.

The relay hub drives it from one task (see ``RelayHub``); the compliance samplers use it as
their lease book (:meth:`Claims.fenced`, :meth:`Claims.refused`) so that every write about a
camera carries the camera's current lease. Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from kitchencam import keys
from kitchencam.relay.leases import FencedBatch, Lease, LeaseLost, LeaseStore, Roster, parse_lease

log = logging.getLogger(__name__)

RENEWALS_PER_TTL: Final = 3
"""Renewals per lease TTL: a relay survives two lost or late renewals before losing a lease."""

SAFETY_SCAN_S: Final = 30.0
"""Time between two safety looks for free cameras while nothing says one is free (a relay
below its share looks at once, through the fleet's shared list of free cameras, when the
relays' summary counts fewer held cameras than enabled ones, or after a registry change, a
relay vanishing, a lease lost or a reconnection)."""

SAFETY_SAMPLE: Final = 200
"""Leases read by a safety look (one ``MGET``), chosen at random: with thousands of relays
below their share the fleet still finds a camera the summary wrongly counts as held within a
few looks, at O(1) cost per relay."""

Stager = Callable[[str, FencedBatch], object]
"""Stages periodic writes about one camera into its batch of the relay's interval."""


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
        self.roster: Roster | None = None
        """The live relays' summary, as last read."""
        self.stagers: list[Stager] = []
        """Writers whose periodic writes ride in each camera's batch of the interval."""
        self.claimed = 0
        self.lost = 0
        self.handed_over = 0
        self.wake = asyncio.Event()
        """Set when the hub should scan now (new cameras, a refused write)."""
        self._next_renew = 0.0
        self._claim_after: float | None = None
        self._joined: float | None = None
        """When this relay first advertised since it (re)connected (unix s)."""
        self._rescan = True
        self._next_scan = 0.0
        self._started = False

    def _counted(self) -> bool:
        """Whether the summary was computed after this relay advertised (so counts it)."""
        roster = self.roster
        return roster is not None and self._joined is not None and roster.computed >= self._joined

    def capacities(self) -> dict[int, int]:
        """Live relays per capacity, as the summary says, this relay included."""
        counts = dict(self.roster.capacities) if self.roster is not None else {}
        if not self._counted():
            own = self.policy.capacity
            counts[own] = counts.get(own, 0) + 1
        return counts

    def held_total(self) -> int:
        """Cameras the live relays hold in all, as the summary says (this relay's own count
        added when the summary predates it)."""
        total = self.roster.held if self.roster is not None else 0
        return total if self._counted() else total + len(self.held)

    def rescan(self) -> None:
        """Look for free cameras at the next scan (something may have freed one)."""
        self._rescan = True

    def scan_due(self, cameras: int) -> bool:
        """Whether a relay below its share should read every lease to find free cameras: when
        the summary counts fewer held cameras than ``cameras`` enabled, or after a rescan
        trigger; otherwise such a scan would find none."""
        if self._rescan or self.roster is None:
            return True
        return self.held_total() < cameras

    async def find_free(self, wanted: Sequence[str], want: int) -> list[str]:
        """Free cameras among ``wanted`` (enabled) for a relay below its share that wants
        ``want`` more: from the fleet's shared list when ``scan_due`` (``shared_free``: one
        relay at a time reads every lease), a random ``SAFETY_SAMPLE`` read directly every
        ``SAFETY_SCAN_S`` (in case the summary over-counts), else none (nothing is read)."""
        now = self._clock()
        if self.scan_due(len(wanted)):
            found = await self.store.shared_free(self.relay_id, wanted, want)
        elif now >= self._next_scan:
            sample = random.sample(list(wanted), min(len(wanted), SAFETY_SAMPLE))
            found = await self.store.free(sample)
        else:
            return []
        self._rescan = False
        self._next_scan = now + SAFETY_SCAN_S
        enabled = set(wanted)
        return [c for c in found if c not in self.held and c in enabled]

    def stage_periodically(self, stage: Stager) -> None:
        """Have ``stage`` add its writes to every held camera's batch of each interval, so one
        fenced script call per interval carries all of a relay's periodic writes."""
        self.stagers.append(stage)

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
        self._rescan = True
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
        self._joined = None
        self._rescan = True

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
            self._rescan = True
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

    async def advertise(self, *, fresh: bool = False) -> None:
        """Publish where this relay answers and what it holds; read the relays' summary
        (recomputed here at once with ``fresh``, e.g. after a hand-over)."""
        policy = self.policy
        if self._joined is None:
            self._joined = time.time()
        # A relay's first advertisement recomputes the summary at once, so that the others
        # count it at their next renewal, before anyone claims (``may_claim``).
        fresh = fresh or not self._started
        self._started = True
        roster = await self.store.advertise(
            policy.relay_id, policy.url, policy.capacity, len(self.held), policy.ttl_s, fresh=fresh
        )
        self._adopt(roster)

    async def watch_roster(self) -> None:
        """Between renewals: once an advertisement counted in the summary has run out (its
        relay may have died), read the summary again (recomputing it if nobody has)."""
        roster = self.roster
        if roster is None or roster.expires > time.time():
            return
        self._adopt(await self.store.roster(self.relay_id))

    def _adopt(self, roster: Roster | None) -> None:
        before = self.roster
        if roster is None:
            return
        if before is None or roster.relays < before.relays or roster.held < before.held:
            self._rescan = True  # a relay vanished or cameras were let go
        self.roster = roster

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
        if hand_over:
            await self.advertise(fresh=True)  # relays below their share see a camera free
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
