"""The checker role: compliance news in, published states, durable events and webhooks out.

Relays append their monitors' transitions (with evidence) to ``kc:transitions``. Checkers read
it with the consumer group ``checkers`` (``XREADGROUP``), apply each entry, and acknowledge it
(``XACK``); entries left pending by a checker that died are taken over with ``XAUTOCLAIM``
once idle for ``CLAIM_IDLE_MS``. Applying is idempotent, keyed by the entry id: the event, its
indexes, the new published state (announced on ``kc:board`` when it changes), the webhook
delivery and an ``applied`` marker are written in one ``MULTI``, so a crash between applying
and acknowledging doubles nothing.

The checker also owns what no relay can say: ``unmonitored`` when a camera's hold expired (its
relay died or dropped it: our fault, never ``offline``), and ``disabled``/enabled from the
registry (it follows ``kc:changes`` with the same group). It writes these as news entries too,
so every state change goes through one path. Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from redis.exceptions import RedisError, ResponseError, WatchError

from kitchencam import keys
from kitchencam.compliance.records import (
    CameraState,
    Event,
    Kind,
    News,
    entry_order,
    published_state,
)
from kitchencam.compliance.states import State
from kitchencam.compliance.store import ComplianceStore
from kitchencam.models import Camera
from kitchencam.redisconn import RedisOutage
from kitchencam.registry import NotFound, Registry
from kitchencam.roles import RoleSet

log = logging.getLogger(__name__)

CLAIM_IDLE_MS: Final = 30_000
"""An entry pending this long with a consumer is taken over (its checker is presumed dead)."""
BLOCK_MS: Final = 1000
POLL_S: Final = 0.1
"""Idle checkers look for news ten times a second (one cheap command each)."""
BATCH: Final = 100
SWEEP_INTERVAL_S: Final = 1.0
"""How often expired holds are looked for: ``unmonitored`` within ``HELD_TTL_S`` + 1 s."""
RECONCILE_INTERVAL_S: Final = 60.0
"""Full pass over the registry (new cameras, switches missed while no checker ran)."""
WATCH_RETRIES: Final = 20


class Checker:
    """Consumes compliance news and keeps states, events and webhook queues."""

    def __init__(
        self,
        store: ComplianceStore,
        registry: Registry,
        consumer: str,
        *,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.redis = store.redis
        self.registry = registry
        self.consumer = consumer
        self.sweep_interval_s = sweep_interval_s
        self.claim_idle_ms = claim_idle_ms
        self.clock = clock
        self.applied = 0
        self.events_written = 0
        self._districts: dict[str, str] = {}

    # -- the loop -------------------------------------------------------------------------

    async def run(self, roles: RoleSet | None = None) -> None:
        """Consume until cancelled; survives Redis outages."""
        ready = False
        next_sweep = next_reconcile = 0.0
        outage = RedisOutage(f"checker {self.consumer}", log)
        while True:
            try:
                if not ready:
                    await self.ensure_groups()
                    await self.drain_own_pending()
                    ready = True
                if time.monotonic() >= next_reconcile:
                    await self.reconcile()
                    next_reconcile = time.monotonic() + RECONCILE_INTERVAL_S
                if time.monotonic() >= next_sweep:
                    await self.sweep()
                    await self.claim_abandoned()
                    next_sweep = time.monotonic() + self.sweep_interval_s
                await self.read_once(block_ms=int(self.sweep_interval_s * 1000))
                outage.recovered()
                if roles is not None:
                    roles.set("checker", True, f"{self.applied} news applied")
            except (RedisError, OSError) as err:
                ready = False
                if roles is not None:
                    roles.set("checker", True, f"waiting for Redis ({type(err).__name__})")
                await asyncio.sleep(outage.failed(err))

    async def ensure_groups(self) -> None:
        """Create the consumer groups (and streams) if they do not exist yet."""
        for stream in (keys.TRANSITIONS, keys.CHANGES):
            try:
                await self.redis.xgroup_create(stream, keys.CHECKER_GROUP, id="0", mkstream=True)
            except ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise

    async def drain_own_pending(self) -> None:
        """Apply what this consumer read but did not acknowledge before it stopped."""
        while True:
            got: Any = await self.redis.xreadgroup(
                keys.CHECKER_GROUP,
                self.consumer,
                {keys.TRANSITIONS: "0", keys.CHANGES: "0"},
                count=BATCH,
            )
            if not any(messages for _, messages in got or []):
                return
            await self._handle(got)

    async def read_once(self, block_ms: int = BLOCK_MS) -> int:
        """Read and apply one batch of new entries; return how many (after waiting up to
        ``block_ms`` when there were none)."""
        deadline = time.monotonic() + block_ms / 1000
        while True:
            # Polled rather than XREADGROUP BLOCK: a blocking read cancelled at shutdown could
            # leave redis-py's connection waiting (seen as a hung `serve` on SIGTERM).
            got: Any = await self.redis.xreadgroup(
                keys.CHECKER_GROUP,
                self.consumer,
                {keys.TRANSITIONS: ">", keys.CHANGES: ">"},
                count=BATCH,
            )
            count = await self._handle(got)
            if count or time.monotonic() >= deadline:
                return count
            await asyncio.sleep(min(POLL_S, max(deadline - time.monotonic(), 0.0)))

    async def claim_abandoned(self) -> int:
        """Take over entries another consumer left pending for ``claim_idle_ms``; apply them."""
        count = 0
        for stream in (keys.TRANSITIONS, keys.CHANGES):
            start = "0-0"
            while True:
                reply: Any = await self.redis.xautoclaim(
                    stream,
                    keys.CHECKER_GROUP,
                    self.consumer,
                    self.claim_idle_ms,
                    start_id=start,
                    count=BATCH,
                )
                start, messages = str(reply[0]), reply[1]
                count += await self._handle([(stream, messages)])
                if start == "0-0":
                    break
        return count

    async def _handle(self, got: Any) -> int:
        count = 0
        for stream, messages in got or []:
            for entry_id, data in messages:
                if data:  # a trimmed entry comes back empty: nothing to apply
                    if stream == keys.CHANGES:
                        await self.follow_change(data)
                    else:
                        await self.apply_entry(entry_id, data)
                await self.redis.xack(stream, keys.CHECKER_GROUP, entry_id)
                count += 1
        return count

    # -- registry changes and holds --------------------------------------------------------

    async def follow_change(self, data: dict[str, str]) -> None:
        """Turn a registry change of a camera into news (switches, registrations, deletions)."""
        if data.get("kind") == "restaurant":
            self._districts.pop(data.get("id", ""), None)  # its district may have changed
        if data.get("kind") != "camera":
            return
        cid = data.get("id", "")
        if data.get("op") == "delete":
            await self._news(Kind.DELETED, cid)
            return
        try:
            camera = await self.registry.get_camera(cid)
        except NotFound:
            return
        await self._check_camera(camera, await self.store.state(cid))

    async def _check_camera(self, camera: Camera, state: CameraState | None) -> None:
        if state is None:
            await self._news(Kind.REGISTERED, camera.id, enabled=camera.enabled)
        elif state.enabled != camera.enabled:
            await self._news(Kind.SWITCH, camera.id, enabled=camera.enabled)

    async def reconcile(self) -> None:
        """Bring every camera's state in line with the registry (start-up and periodically)."""
        cameras = await self.registry.all_cameras()
        states = await self.store.states([c.id for c in cameras])
        for camera in cameras:
            await self._check_camera(camera, states.get(camera.id))

    async def sweep(self) -> int:
        """Cameras whose hold ran out (checked against Redis's own expiry) become unmonitored."""
        now = self.clock()
        members: Any = await self.redis.zrangebyscore(keys.HELD, "-inf", now)
        expired = [str(c) for c in members]
        if not expired:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in expired:
                pipe.exists(keys.camera_relay(cid))
            present = await pipe.execute()
        gone = [cid for cid, alive in zip(expired, present, strict=True) if not alive]
        states = await self.store.states(gone)
        lost = 0
        for cid in gone:
            state = states.get(cid)
            if state is not None and state.held:
                await self._news(Kind.LOST, cid)
                lost += 1
        if gone:
            # A relay that comes back re-adds its cameras on its next refresh.
            await self.redis.zrem(keys.HELD, *gone)
        return lost

    async def _news(self, kind: Kind, cid: str, *, enabled: bool = True) -> None:
        detail = {
            Kind.LOST: "no relay analyses the camera (platform side)",
            Kind.SWITCH: "switched on" if enabled else "switched off",
            Kind.REGISTERED: "registered",
            Kind.DELETED: "deleted",
        }.get(kind, "")
        cause = {
            Kind.LOST: "lease_lost",
            Kind.SWITCH: "enabled" if enabled else "disabled",
        }.get(kind, kind.value)
        news = News(kind=kind, camera=cid, t=self.clock(), cause=cause, detail=detail)
        news = news.model_copy(update={"enabled": enabled})
        await self.redis.xadd(
            keys.TRANSITIONS,
            news.fields(),  # type: ignore[arg-type]
            maxlen=keys.TRANSITIONS_MAXLEN,
            approximate=True,
        )

    # -- applying one entry ---------------------------------------------------------------

    async def apply_entry(self, entry_id: str, data: dict[str, str]) -> Event | None:
        """Apply one ``kc:transitions`` entry exactly once; return the event it made, if any."""
        try:
            news = News.parse(data)
        except ValueError as err:
            log.warning("dropping compliance news %s: %s", entry_id, err)
            return None
        if news.kind is Kind.DELETED:
            await self._forget(news.camera)
            return None
        try:
            camera = await self.registry.get_camera(news.camera)
        except NotFound:
            return None  # deleted since: nothing to show it to
        district = await self._district(camera.restaurant_id)
        for _ in range(WATCH_RETRIES):
            try:
                return await self._apply(entry_id, news, camera, district)
            except WatchError:
                continue
        raise RedisError(f"camera {camera.id} state kept changing while applying {entry_id}")

    async def _apply(
        self, entry_id: str, news: News, camera: Camera, district: str
    ) -> Event | None:
        key = keys.camera_state(camera.id)
        marker = keys.applied(entry_id)
        webhook = await self.redis.exists(keys.webhook(camera.restaurant_id))
        pipe: Any
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(key, marker)
            if await pipe.exists(marker):
                await pipe.unwatch()
                return None  # applied before a crash: nothing twice
            raw = await pipe.get(key)
            current = (
                CameraState.model_validate_json(raw)
                if raw is not None
                else CameraState(
                    camera_id=camera.id,
                    restaurant_id=camera.restaurant_id,
                    district=district,
                    state=State.DISABLED if not camera.enabled else State.UNMONITORED,
                    since=camera.created_at,
                    enabled=camera.enabled,
                    cause="registered",
                    detail="registered",
                )
            )
            newer = entry_order(entry_id) > entry_order(current.last_entry)
            event: Event | None = None
            updated: CameraState | None = None
            if newer:
                updated = self._next(current, news, entry_id, district)
                if updated.state != current.state:
                    event = self._event(entry_id, news, camera, district, current.state, updated)
                    updated = updated.model_copy(update={"last_event": entry_id})
            elif news.kind is Kind.MONITOR and news.from_state != news.to_state:
                # Older news applied late (taken over from a dead checker after newer news):
                # history keeps it at its own time; the current state is not moved back.
                event = self._event(entry_id, news, camera, district, State(news.from_state), None)
            pipe.multi()
            pipe.set(marker, "1", ex=keys.APPLIED_TTL_S)
            if updated is not None:
                pipe.set(key, updated.model_dump_json())
                if raw is None or board_fields(updated) != board_fields(current):
                    _announce(pipe, board_fields(updated))
            if event is not None:
                self._write_event(pipe, event, bool(webhook))
            await pipe.execute()
        self.applied += 1
        if event is not None:
            self.events_written += 1
            log.info(
                "camera %s: %s -> %s (%s)",
                camera.id,
                event.from_state.value,
                event.to_state.value,
                event.cause,
            )
        return event

    def _next(self, current: CameraState, news: News, entry_id: str, district: str) -> CameraState:
        enabled, held, monitor = current.enabled, current.held, current.monitor_state
        relay = current.relay
        if news.kind in (Kind.MONITOR, Kind.HELD):
            held, relay = True, news.relay or relay
            if news.to_state:
                monitor = State(news.to_state)
        elif news.kind is Kind.LOST:
            held, relay = False, None
        elif news.kind in (Kind.SWITCH, Kind.REGISTERED):
            enabled = news.enabled
        state = published_state(enabled, held, monitor)
        changed = state != current.state
        # A relay taking a camera up (or losing it) changes why it shows what it shows even
        # when the state stays: ``unmonitored`` because nobody checks it, or because its first
        # picture is still awaited.
        explained = changed or (held != current.held and state is not State.DISABLED)
        return current.model_copy(
            update={
                "district": district,
                "enabled": enabled,
                "held": held,
                "monitor_state": monitor,
                "relay": relay,
                "state": state,
                "since": news.t if changed else current.since,
                "cause": _cause(news, state) if explained else current.cause,
                "detail": news.detail if explained else current.detail,
                "last_entry": entry_id,
                "updated_at": self.clock(),
            }
        )

    @staticmethod
    def _event(
        entry_id: str,
        news: News,
        camera: Camera,
        district: str,
        from_state: State,
        updated: CameraState | None,
    ) -> Event:
        to_state = updated.state if updated is not None else State(news.to_state)
        cause = _cause(news, to_state)
        return Event(
            id=entry_id,
            camera_id=camera.id,
            restaurant_id=camera.restaurant_id,
            district=district,
            t=news.t,
            from_state=from_state,
            to_state=to_state,
            cause=cause,
            detail=news.detail,
            measures=news.measures,
            snapshot=news.snapshot or None,
            last_good=news.last_good or None,
            relay=news.relay or None,
        )

    def _write_event(self, pipe: Any, event: Event, webhook: bool) -> None:
        horizon = event.t - self.store.retention_s
        pipe.set(keys.event(event.id), event.model_dump_json(), ex=self.store.retention_s)
        for index in (
            keys.EVENTS,
            keys.camera_events(event.camera_id),
            keys.restaurant_events(event.restaurant_id),
        ):
            pipe.zadd(index, {event.id: event.t})
            pipe.zremrangebyscore(index, "-inf", horizon)
        if webhook:
            delivery = {"restaurant": event.restaurant_id, "attempts": 0, "first": self.clock()}
            pipe.set(keys.webhook_delivery(event.id), json.dumps(delivery), ex=8 * 86400)
            pipe.zadd(keys.WEBHOOK_QUEUE, {event.id: self.clock()}, nx=True)

    async def _forget(self, cid: str) -> None:
        """A deleted camera: drop its live keys (its events stay for their retention) and tell
        the boards."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(
                keys.camera_state(cid),
                keys.camera_monitor(cid),
                keys.camera_reference(cid),
                keys.camera_preview(cid),
            )
            pipe.zrem(keys.HELD, cid)
            _announce(pipe, {"camera": cid, "state": ""})
            await pipe.execute()

    async def _district(self, rid: str) -> str:
        district = self._districts.get(rid)
        if district is None:
            try:
                district = (await self.registry.get_restaurant(rid)).district
            except NotFound:
                district = ""
            if len(self._districts) > 10_000:
                self._districts.clear()
            self._districts[rid] = district
        return district


def board_fields(state: CameraState) -> dict[str, str]:
    """A ``kc:board`` entry announcing a camera's published state to live boards."""
    return {
        "camera": state.camera_id,
        "restaurant": state.restaurant_id,
        "district": state.district,
        "state": state.state.value,
        "since": repr(state.since),
        "cause": state.cause,
        "detail": state.detail,
    }


def _announce(pipe: Any, fields: dict[str, str]) -> None:
    pipe.xadd(keys.BOARD, fields, maxlen=keys.BOARD_MAXLEN, approximate=True)


def _cause(news: News, state: State) -> str:
    """Why the camera is in ``state`` after ``news``."""
    if news.kind is Kind.HELD and state not in (State.OK, State.UNMONITORED, State.DISABLED):
        return state.value  # a relay took over a camera that is still flagged
    return news.cause or news.kind.value
