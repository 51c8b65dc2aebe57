"""The relay role: which cameras this process pulls, their streams, viewers and figures.

It follows the registry (the ``kc:changes`` stream for promptness, a full resync as a
safety net) to know the enabled cameras, and pulls only those whose lease it holds
(``kitchencam.relay.leases``, DESIGN promise 1): one supervised ingest per held camera (and
one for its sub-stream when it has one, which then feeds the compliance observer). It
publishes per-camera figures to Redis for the API. Runs on the event loop.

Leases. One task keeps them: every ``CLAIM_SCAN_S`` it renews when due (due every TTL / 3,
``KITCHENCAM_LEASE_TTL_S``, but checked only on the 1 s scan, so with the default 8 s TTL the
renewals come every 3 s; with 3 s, every 1 s), all its leases in one script call, stops at once
any camera whose lease now names another relay, then claims free cameras up to
``min(capacity, fair share)`` and hands extras over while it holds more than its fair share + 1
(``kitchencam.relay.share``). It stops a camera's pull before releasing its lease, and claims
before it starts a pull, so two relays never pull a camera at once while both reach Redis.

What it knows of the other relays comes from one summary (``kc:relays:summary``: relays per
capacity, cameras held in all), which one relay at a time recomputes from the advertisements
when an advertisement counted in it runs out (about every TTL - TTL/3) or a relay joins, stops
or hands a camera over; every relay reads that one key at each renewal, and again on a scan
once it ran out. A relay below its fair share reads the leases (``MGET``) to find free cameras
only when the summary counts fewer held cameras than enabled ones, after a registry change, a
relay vanishing, a lease lost or refused, or a reconnection; otherwise it reads one random
sample of 1,000 leases every ``SAFETY_SCAN_S`` (30 s), in case the summary over-counts. With
every camera held, nothing else is read however uneven the shares.

A relay that dies loses its cameras after at most the TTL; the first scan after its
advertisement ran out recomputes the summary, sees the relay gone and the cameras free, and
claims them, so they are pulled again within TTL + about 1 s + the camera's open time
(0.6-3 s), under 15 s. A relay that stops releases its leases and its advertisement and drops
the summary at once, so others claim its cameras at their next renewal (TTL / 3).

Fencing. The writes a relay makes about its cameras every ``FIGURES_INTERVAL_S`` (figures,
``kc:live:{cid}``, and the compliance holds, ``kc:camera:{cid}:relay`` and ``kc:held``, staged
by the samplers through ``Claims.stage_periodically``) go in one fenced script call for all of
its cameras: the script compares each camera's ``kc:lease:{cid}`` with this relay's exact lease
value and writes that camera's part only if it matches. The compliance side's other writes
(monitor memory, news, previews, automatic reference views) are fenced the same way, one
camera at a time, through the samplers' lease book (``Claims.fenced``). A camera whose write
is refused had its lease moved: the relay renews at once, which stops that camera alone.

Redis outage policy. While Redis does not answer, the relay keeps pulling the cameras it
holds (their viewers keep their video) and claims nothing (no relay can while Redis is down).
When Redis answers again it renews first: a lease still its own is extended, a lease that
vanished (Redis restarted without it) is claimed again with ``SET NX`` and a new fence, and a
camera whose lease now names another relay is stopped at once. After every (re)connection,
start-up included, it waits one renewal interval before claiming free cameras, so that relays
still holding cameras re-assert their leases first. A relay cut off from Redis while the
others still reach it loses its leases after the TTL and may pull a camera together with its
new holder until it reaches Redis again: the price of keeping viewers' video through an
outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kitchencam import keys
from kitchencam.addresses import AddressPolicy, StreamAddress
from kitchencam.models import Camera
from kitchencam.redisconn import RedisOutage
from kitchencam.registry import Registry
from kitchencam.relay import share
from kitchencam.relay.claims import Claims, LeasePolicy
from kitchencam.relay.leases import LeaseStore
from kitchencam.relay.media import StreamObserver
from kitchencam.relay.stream import CameraStream
from kitchencam.relay.supervisor import Supervisor
from kitchencam.relay.webrtc import IceSettings, ViewerHub
from kitchencam.roles import RoleSet, cancel_and_wait

log = logging.getLogger(__name__)

RESYNC_INTERVAL_S: Final = 10.0
# Registry changes are polled, not read with XREAD BLOCK: a blocking read cancelled at
# shutdown can leave redis-py's task cancelling forever (seen with redis-py 8.1).
CHANGES_POLL_S: Final = 1.0
FIGURES_INTERVAL_S: Final = 5.0
LIVE_TTL_S: Final = 20
REDIS_RETRY_S: Final = 2.0
CLAIM_SCAN_S: Final = 1.0
"""How often the lease keeper looks for free cameras (and whether a renewal is due)."""
RELEASE_TIMEOUT_S: Final = 2.0
"""Time a stopping relay gives Redis to take its leases and advertisement back."""

ObserverFactory = Callable[[Camera], StreamObserver | None]


@dataclass
class _Pull:
    """One camera being pulled: its streams and their supervisor tasks."""

    camera: Camera
    fingerprint: tuple[object, ...]
    main: CameraStream
    sub: CameraStream | None
    observer: StreamObserver | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _fingerprint(camera: Camera) -> tuple[object, ...]:
    return (
        camera.url,
        camera.substream_url,
        camera.username,
        camera.password_enc,
        camera.transport,
    )


class RelayHub:
    """Pulls the enabled cameras whose lease it holds, once each, and serves their viewers."""

    def __init__(
        self,
        registry: Registry,
        redis: Redis,
        policy: AddressPolicy,
        viewers: ViewerHub,
        ice: IceSettings,
        observer_factory: ObserverFactory | None = None,
        *,
        leases: LeasePolicy,
    ) -> None:
        self._registry = registry
        self._redis = redis
        self._policy = policy
        self.viewers = viewers
        self.ice = ice
        self._observer_factory = observer_factory
        self.claims = Claims(LeaseStore(redis), leases)
        self._wanted: dict[str, Camera] = {}
        """Enabled cameras, as the registry says."""
        self._pulls: dict[str, _Pull] = {}

    def stream(self, camera_id: str) -> CameraStream | None:
        """The main stream of a camera this process pulls."""
        pull = self._pulls.get(camera_id)
        return pull.main if pull else None

    def streams(self) -> Iterator[CameraStream]:
        """Every main stream pulled here."""
        return (p.main for p in self._pulls.values())

    @property
    def camera_ids(self) -> list[str]:
        """Ids of the cameras pulled here."""
        return list(self._pulls)

    # -- the role ------------------------------------------------------------------------

    async def run(self, roles: RoleSet) -> None:
        """Follow the registry, keep leases and publish figures until cancelled; then stop
        every pull and release every lease."""
        tasks = [
            asyncio.create_task(self._publish_figures(), name="relay-figures"),
            asyncio.create_task(self._keep_leases(roles), name="relay-leases"),
        ]
        try:
            await self._follow(roles)
        finally:
            await cancel_and_wait(*tasks)
            await self.close()

    def _report(self, roles: RoleSet) -> None:
        roles.set(
            "relay",
            True,
            f"pulling {len(self._pulls)} cameras, holding {len(self.claims.held)} leases",
        )

    async def _follow(self, roles: RoleSet) -> None:
        last_id = "$"
        next_resync = 0.0
        while True:
            try:
                if time.monotonic() >= next_resync:
                    last_id = await self._last_change_id()
                    await self.sync(await self._registry.all_cameras())
                    next_resync = time.monotonic() + RESYNC_INTERVAL_S
                    self._report(roles)
                entries: Any = await self._redis.xread({keys.CHANGES: last_id}, count=1000)
                for _, messages in entries or []:
                    for entry_id, data in messages:
                        last_id = entry_id
                        if data.get("kind") == "camera":
                            await self.sync_one(data["id"])
                self._report(roles)
                await asyncio.sleep(CHANGES_POLL_S)
            except (RedisError, OSError) as err:
                roles.set("relay", True, f"media flows; waiting for Redis ({type(err).__name__})")
                log.warning("relay cannot read the registry (%s); retrying", type(err).__name__)
                next_resync = 0.0
                await asyncio.sleep(REDIS_RETRY_S)

    async def _last_change_id(self) -> str:
        newest = await self._redis.xrevrange(keys.CHANGES, count=1)
        return str(newest[0][0]) if newest else "0"

    async def sync(self, cameras: list[Camera]) -> None:
        """Want exactly the enabled cameras in ``cameras``; pull those whose lease is held."""
        wanted = {c.id: c for c in cameras if c.enabled}
        if wanted.keys() - self._wanted.keys():
            self.claims.rescan()  # cameras this relay did not know of: perhaps free
        self._wanted = wanted
        for cid in [cid for cid in self.claims.held if cid not in self._wanted]:
            await self._drop(cid, "no longer enabled or registered")
        for camera in self._wanted.values():
            if camera.id in self.claims.held:
                self._ensure(camera)
        self.claims.wake.set()

    async def sync_one(self, camera_id: str) -> None:
        """Bring one camera in line with the registry."""
        try:
            camera = await self._registry.get_camera(camera_id)
        except Exception:
            camera = None
        if camera is None or not camera.enabled:
            self._wanted.pop(camera_id, None)
            await self._drop(camera_id, "disabled or deleted")
            return
        self._wanted[camera.id] = camera
        if camera.id in self.claims.held:
            self._ensure(camera)
        else:
            self.claims.rescan()
            self.claims.wake.set()

    def _ensure(self, camera: Camera) -> None:
        pull = self._pulls.get(camera.id)
        fingerprint = _fingerprint(camera)
        if pull is not None and pull.fingerprint == fingerprint:
            pull.camera = camera
            return
        if pull is not None:
            self._cancel(pull)
        main = pull.main if pull is not None else CameraStream(camera.id)
        sub = CameraStream(f"{camera.id}/sub") if camera.substream_url else None
        observer = self._observer_factory(camera) if self._observer_factory else None
        if observer is not None:
            (sub or main).add_observer(observer)
        pull = _Pull(camera, fingerprint, main, sub, observer)
        password = self._registry.camera_password(camera)
        pull.tasks.append(self._supervise(main, camera, camera.stream, password))
        if sub is not None and camera.substream is not None:
            pull.tasks.append(self._supervise(sub, camera, camera.substream, password))
        self._pulls[camera.id] = pull
        lease = self.claims.lease(camera.id)
        log.info(
            "camera %s of restaurant %s: pulling (lease fence %s)",
            camera.id,
            camera.restaurant_id,
            lease.fence if lease else "?",
        )

    def _supervise(
        self, stream: CameraStream, camera: Camera, address: StreamAddress, password: str | None
    ) -> asyncio.Task[None]:
        supervisor = Supervisor(
            stream, address, camera.username, password, camera.transport, self._policy
        )
        return asyncio.create_task(supervisor.run(), name=f"ingest-{stream.camera_id}")

    def _cancel(self, pull: _Pull) -> None:
        for task in pull.tasks:
            task.cancel()
        close = getattr(pull.observer, "close", None)
        if callable(close):
            close()

    async def _stop(self, camera_id: str, why: str, *, flush: bool = False) -> None:
        """Stop a camera's pull; with ``flush``, also wait until its observer has written what
        it still had (before the lease is given up, while its writes are still accepted)."""
        pull = self._pulls.pop(camera_id, None)
        if pull is None:
            return
        self._cancel(pull)
        await cancel_and_wait(*pull.tasks)
        wait_closed = getattr(pull.observer, "wait_closed", None)
        if flush and callable(wait_closed):
            await wait_closed()
        await self.viewers.close_camera(camera_id)
        pull.main.close()
        log.info("camera %s: stopped pulling (%s)", camera_id, why)

    async def _drop(self, camera_id: str, why: str) -> None:
        """Stop pulling a camera this relay no longer wants, then release its lease."""
        await self._stop(camera_id, why, flush=True)
        await self.claims.release(camera_id)

    async def close(self) -> None:
        """Stop every ingest and viewer (waits for the ingest threads to end), then release
        every lease and the advertisement."""
        try:
            for pull in self._pulls.values():
                self._cancel(pull)
            await cancel_and_wait(*(t for p in self._pulls.values() for t in p.tasks))
            waiters = [getattr(p.observer, "wait_closed", None) for p in self._pulls.values()]
            await asyncio.gather(*(w() for w in waiters if callable(w)))
            await self.viewers.close_all()
            for pull in self._pulls.values():
                pull.main.close()
            self._pulls.clear()
        finally:
            try:
                async with asyncio.timeout(RELEASE_TIMEOUT_S):
                    await self.claims.release_all()
            except (RedisError, OSError, TimeoutError) as err:
                log.warning(
                    "relay %s: cannot release its leases (%s); they expire by themselves",
                    self.claims.relay_id,
                    type(err).__name__,
                )

    # -- leases --------------------------------------------------------------------------

    async def _keep_leases(self, roles: RoleSet) -> None:
        """Renew, claim and hand over leases until cancelled; survives Redis outages."""
        claims = self.claims
        outage = RedisOutage(f"relay {claims.relay_id} leases", log)
        while True:
            claims.wake.clear()
            try:
                await self.lease_round()
                outage.recovered()
                self._report(roles)
            except (RedisError, OSError) as err:
                outage.failed(err)  # logged once per outage; retried every scan, not backed off
                claims.disconnected()
            except Exception:
                # A bug must not end lease keeping silently (the relay would never claim again).
                log.exception("relay %s: keeping leases failed; retrying", claims.relay_id)
                claims.disconnected()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLAIM_SCAN_S):
                    await claims.wake.wait()

    async def lease_round(self) -> None:
        """One pass: renew when due (stopping cameras lost), then claim and hand over."""
        claims = self.claims
        if claims.renew_due():
            for loss in await claims.renew():
                await self._stop(loss.camera_id, loss.why)
        else:
            await claims.watch_roster()
        if not claims.may_claim():
            return
        policy = claims.policy
        step = share.plan(len(claims.held), len(self._wanted), claims.capacities(), policy.capacity)
        if step.hand_over:
            viewers = {
                cid: (p.main.viewers if (p := self._pulls.get(cid)) else 0) for cid in claims.held
            }
            for cid in share.hand_over_order(viewers)[: step.hand_over]:
                await self._stop(cid, "handed over to balance the relays", flush=True)
                await claims.release(cid, hand_over=True)
        if step.claim:
            free = await claims.find_free(list(self._wanted), step.claim)
            taken = 0
            for cid in share.claim_order(claims.relay_id, free):
                if taken >= step.claim:
                    break
                if await claims.claim(cid) is None:
                    continue
                taken += 1
                camera = self._wanted.get(cid)
                if camera is None:  # disabled while we claimed it
                    await claims.release(cid)
                else:
                    self._ensure(camera)

    # -- figures -------------------------------------------------------------------------

    async def _publish_figures(self) -> None:
        """Write every pulled camera's figures to Redis, batched, every few seconds."""
        while True:
            await asyncio.sleep(FIGURES_INTERVAL_S)
            try:
                await self.publish_figures()
            except (RedisError, OSError) as err:
                log.debug("cannot publish figures (%s)", type(err).__name__)

    async def publish_figures(self) -> None:
        """The interval's periodic writes about every pulled camera (its figures, and what
        ``Claims.stage_periodically`` adds: the compliance holds) in one fenced script call,
        each camera checked against its lease; a refused camera is stopped."""
        now = time.monotonic()
        batches = []
        for cid, pull in self._pulls.items():
            lease = self.claims.lease(cid)
            if lease is None:
                continue
            batch = self.claims.store.batch(lease)
            batch.set(keys.live(cid), json.dumps(pull.main.figures(now)), ex=LIVE_TTL_S)
            for stage in self.claims.stagers:
                stage(cid, batch)
            batches.append(batch)
        await self.claims.run_fenced(batches)
