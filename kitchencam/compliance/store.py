"""Compliance data in Redis: monitors, news, snapshots, references, states and events.

The relay's sampler, the checker and the API share this one store of the compliance keys
(named in ``kitchencam.keys``). Two writers keep their own transactions next to their logic:
the checker's apply-once ``MULTI`` (``checker.py``) and webhook deliveries (``webhooks.py``).
Runs on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from kitchencam import keys
from kitchencam.compliance.baseline import Baseline
from kitchencam.compliance.frames import JpegSnapshot
from kitchencam.compliance.records import CameraState, Event, News
from kitchencam.compliance.states import Memory

log = logging.getLogger(__name__)

PREVIEW_TTL_S: Final = 1800
"""A preview older than 30 minutes (three missed refreshes) is not shown."""

SHA_LENGTH: Final = 64


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stored evidence JPEG and what it shows."""

    sha256: str
    jpeg: bytes
    camera_id: str
    restaurant_id: str
    t: float


@dataclass(frozen=True, slots=True)
class Reference:
    """A camera's approved reference view."""

    snapshot: str
    approved_by: str
    """``auto``, ``restaurant:{rid}`` or ``regulator:{name}``."""
    approved_at: float

    def public(self) -> dict[str, Any]:
        """What the API shows."""
        return {
            "snapshot": self.snapshot,
            "approved_by": self.approved_by,
            "approved_at": self.approved_at,
            "automatic": self.approved_by == "auto",
        }


class ComplianceStore:
    """Reads and writes every compliance key."""

    def __init__(self, redis: Redis, retention_days: int = 90) -> None:
        self.redis = redis
        self.retention_s = retention_days * 86400

    # -- the relay's monitors -------------------------------------------------------------

    async def load_monitor(self, cid: str) -> tuple[Memory | None, Baseline | None]:
        """The monitor's saved memory and baseline (``None`` where missing or unreadable)."""
        raw = await self.redis.get(keys.camera_monitor(cid))
        if raw is None:
            return None, None
        try:
            data = json.loads(raw)
            return Memory.from_dict(data["memory"]), Baseline.from_dict(data["baseline"])
        except (ValueError, KeyError, TypeError) as err:
            log.warning("camera %s: saved monitor unreadable (%s); starting afresh", cid, err)
            return None, None

    # Each write is staged onto ``pipe`` (a Redis pipeline, or a relay's lease-fenced batch:
    # ``kitchencam.relay.leases.FencedBatch``) by a ``stage_*`` method, so a relay writes the
    # same commands fenced by its camera lease.

    def stage_monitor(self, pipe: Any, cid: str, memory: Memory, baseline: Baseline) -> None:
        """Stage saving the monitor."""
        data = {"memory": memory.to_dict(), "baseline": baseline.to_dict(), "saved": time.time()}
        pipe.set(keys.camera_monitor(cid), json.dumps(data))

    async def save_monitor(self, cid: str, memory: Memory, baseline: Baseline) -> None:
        """Save the monitor so that another relay continues where this one was."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self.stage_monitor(pipe, cid, memory, baseline)
            await pipe.execute()

    @staticmethod
    def stage_held(pipe: Any, cids: Sequence[str], instance: str) -> None:
        """Stage marking ``cids`` as held by the relay ``instance``."""
        until = time.time() + keys.HELD_TTL_S
        for cid in cids:
            pipe.set(keys.camera_relay(cid), instance, ex=keys.HELD_TTL_S)
        pipe.zadd(keys.HELD, dict.fromkeys(cids, until))

    async def refresh_held(self, cids: Sequence[str], instance: str) -> None:
        """Mark every camera this relay analyses as held, in one pipeline."""
        if not cids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            self.stage_held(pipe, cids, instance)
            await pipe.execute()

    def stage_news(
        self, pipe: Any, news: News, snapshots: Sequence[JpegSnapshot], rid: str
    ) -> None:
        """Stage storing the snapshots and appending the news (the last command)."""
        for snap in snapshots:
            self._put_snapshot(pipe, snap, news.camera, rid, news.t)
        pipe.xadd(
            keys.TRANSITIONS,
            news.fields(),
            maxlen=keys.TRANSITIONS_MAXLEN,
            approximate=True,
        )

    async def publish(self, news: News, snapshots: Sequence[JpegSnapshot], rid: str) -> str:
        """Store the snapshots and append the news in one transaction; return the entry id."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self.stage_news(pipe, news, snapshots, rid)
            results = await pipe.execute()
        return str(results[-1])

    @staticmethod
    def stage_preview(pipe: Any, cid: str, snap: JpegSnapshot, t: float) -> None:
        """Stage keeping the latest preview picture."""
        key = keys.camera_preview(cid)
        pipe.hset(key, mapping={"jpeg": snap.b64(), "sha": snap.sha256, "t": repr(t)})
        pipe.expire(key, PREVIEW_TTL_S)

    async def save_preview(self, cid: str, snap: JpegSnapshot, t: float) -> None:
        """Keep the latest preview picture (expires after an hour)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self.stage_preview(pipe, cid, snap, t)
            await pipe.execute()

    def _put_snapshot(self, pipe: Any, snap: JpegSnapshot, cid: str, rid: str, t: float) -> None:
        key = keys.snapshot(snap.sha256)
        pipe.hset(
            key,
            mapping={"jpeg": snap.b64(), "camera": cid, "restaurant": rid, "t": repr(t)},
        )
        pipe.expire(key, self.retention_s)

    # -- snapshots and references -----------------------------------------------------

    async def snapshot(self, sha: str) -> Snapshot | None:
        """A stored snapshot, or ``None``."""
        if len(sha) != SHA_LENGTH or not all(c in "0123456789abcdef" for c in sha):
            return None
        data: Any = await self.redis.hgetall(keys.snapshot(sha))
        if not data:
            return None
        try:
            jpeg = base64.b64decode(data["jpeg"], validate=True)
            return Snapshot(sha, jpeg, data["camera"], data["restaurant"], float(data["t"]))
        except (KeyError, ValueError, binascii.Error):
            return None

    async def preview(self, cid: str) -> tuple[JpegSnapshot, float] | None:
        """The camera's latest preview picture and its time, if fresh."""
        data = await self.redis.hgetall(keys.camera_preview(cid))
        try:
            return JpegSnapshot.of(base64.b64decode(data["jpeg"], validate=True)), float(data["t"])
        except (KeyError, ValueError, binascii.Error):
            return None

    async def reference(self, cid: str) -> Reference | None:
        """The camera's approved reference view, if any."""
        raw = await self.redis.hget(keys.camera_reference(cid), "meta")
        if raw is None:
            return None
        data = json.loads(raw)
        return Reference(data["snapshot"], data["approved_by"], float(data["approved_at"]))

    async def reference_jpeg(self, cid: str) -> bytes | None:
        """The approved reference view's JPEG (kept as long as it is the reference)."""
        raw = await self.redis.hget(keys.camera_reference(cid), "jpeg")
        if raw is None:
            return None
        try:
            return base64.b64decode(raw, validate=True)
        except (ValueError, binascii.Error):
            return None

    async def approve_reference(
        self, cid: str, rid: str, snap: JpegSnapshot, by: str, t: float | None = None
    ) -> Reference:
        """Store an approved reference view and tell the relays (on ``kc:changes``)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            ref = self.stage_reference(pipe, cid, rid, snap, by, t)
            await pipe.execute()
        return ref

    def stage_reference(
        self, pipe: Any, cid: str, rid: str, snap: JpegSnapshot, by: str, t: float | None = None
    ) -> Reference:
        """Stage storing an approved reference view and telling the relays."""
        ref = Reference(snap.sha256, by, round(time.time() if t is None else t, 3))
        self._put_snapshot(pipe, snap, cid, rid, ref.approved_at)
        pipe.hset(
            keys.camera_reference(cid),
            mapping={"meta": json.dumps(ref.public()), "jpeg": snap.b64()},
        )
        pipe.xadd(
            keys.CHANGES,
            {"kind": "reference", "id": cid, "op": "auto" if by == "auto" else "approve"},
            maxlen=keys.CHANGES_MAXLEN,
            approximate=True,
        )
        return ref

    # -- published states and events ----------------------------------------------------

    async def state(self, cid: str) -> CameraState | None:
        """A camera's published state."""
        raw = await self.redis.get(keys.camera_state(cid))
        return None if raw is None else CameraState.model_validate_json(raw)

    async def states(self, cids: Sequence[str]) -> dict[str, CameraState]:
        """Published states of many cameras (missing ones left out)."""
        out: dict[str, CameraState] = {}
        for start in range(0, len(cids), 500):
            chunk = list(cids[start : start + 500])
            raws = await self.redis.mget([keys.camera_state(c) for c in chunk])
            for cid, raw in zip(chunk, raws, strict=True):
                if raw is not None:
                    out[cid] = CameraState.model_validate_json(raw)
        return out

    async def event(self, eid: str) -> Event | None:
        """One event."""
        raw = await self.redis.get(keys.event(eid))
        return None if raw is None else Event.model_validate_json(raw)

    async def events_between(self, index: str, start: float, end: float) -> list[Event]:
        """Events of one index (a camera's, a restaurant's, or all) in ``[start, end]``, oldest
        first."""
        ids: Any = await self.redis.zrangebyscore(index, start, end)
        return await self._events(ids)

    async def event_page(
        self, index: str, before: tuple[float, str] | None, since: float, batch: int
    ) -> list[Event]:
        """Up to ``batch`` events of an index, newest first, strictly older than ``before``."""
        top: str | float = "+inf" if before is None else before[0]
        ids: Any = await self.redis.zrevrangebyscore(
            index, top, since, start=0, num=batch + 50, withscores=True
        )
        picked = []
        for eid, score in ids:
            if before is not None and (score, str(eid)) >= (before[0], before[1]):
                continue
            picked.append(str(eid))
        return await self._events(picked[:batch])

    async def _events(self, ids: Sequence[str]) -> list[Event]:
        if not ids:
            return []
        raws = await self.redis.mget([keys.event(str(i)) for i in ids])
        return [Event.model_validate_json(r) for r in raws if r is not None]

    async def last_event_before(self, cid: str, t: float) -> Event | None:
        """The camera's newest event at or before ``t``."""
        ids: Any = await self.redis.zrevrangebyscore(
            keys.camera_events(cid), t, "-inf", start=0, num=1
        )
        found = await self._events(ids)
        return found[0] if found else None
