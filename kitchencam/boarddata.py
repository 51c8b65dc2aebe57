"""What the regulators' board shows, read from Redis: camera rows with uptime, and events.

The I/O shell of ``kitchencam.boardview``: every read is batched (``MGET`` and pipelines in
chunks of ``CHUNK``), so a board of N cameras costs a handful of round trips per thousand
cameras, not N. Runs on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any, Final

from redis.asyncio import Redis

from kitchencam import keys
from kitchencam.boardview import EventFilters, Row
from kitchencam.compliance.records import CameraState, Event
from kitchencam.compliance.store import ComplianceStore
from kitchencam.compliance.uptime import WINDOWS_S, Change, uptime
from kitchencam.models import Camera, Restaurant
from kitchencam.registry import Registry

CHUNK: Final = 500
"""Keys per MGET or pipeline."""
EVENTS_EXPORT_MAX: Final = 100_000
"""Most events one CSV export holds (narrow the time range for more)."""
EVENT_BATCH: Final = 500


class BoardData:
    """Reads the board's rows and events."""

    def __init__(self, registry: Registry, store: ComplianceStore) -> None:
        self.registry = registry
        self.store = store
        self.redis: Redis = store.redis

    async def restaurants(self, rids: Sequence[str]) -> dict[str, Restaurant]:
        """Restaurants by id (missing ones left out)."""
        out: dict[str, Restaurant] = {}
        unique = sorted(set(rids))
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start : start + CHUNK]
            raws = await self.redis.mget([keys.restaurant(r) for r in chunk])
            for rid, raw in zip(chunk, raws, strict=True):
                if raw is not None:
                    out[rid] = Restaurant.model_validate_json(raw)
        return out

    async def rows(self) -> list[Row]:
        """Every camera as a board row: names, district, state (no uptime or snapshot time
        yet: :meth:`detailed` adds them to the rows that need them)."""
        cameras = await self.registry.all_cameras()
        states = await self.store.states([c.id for c in cameras])
        restaurants = await self.restaurants([c.restaurant_id for c in cameras])
        rows = []
        for camera in cameras:
            restaurant = restaurants.get(camera.restaurant_id)
            district = restaurant.district if restaurant is not None else ""
            state = states.get(camera.id) or CameraState.initial(camera, district)
            rows.append(
                Row(
                    camera_id=camera.id,
                    camera_name=camera.name,
                    location=camera.location,
                    restaurant_id=camera.restaurant_id,
                    restaurant_name=restaurant.name if restaurant is not None else "",
                    district=state.district or district,
                    state=state.state,
                    since=state.since,
                    cause=state.cause,
                    detail=state.detail,
                    registered=camera.created_at,
                )
            )
        return rows

    async def detailed(self, rows: Sequence[Row], now: float | None = None) -> list[Row]:
        """``rows`` with their uptime over 24 h and 7 d and their latest preview's time."""
        now = time.time() if now is None else now
        cids = [r.camera_id for r in rows]
        recent = await self._recent_changes(cids, now - WINDOWS_S["7d"], now)
        previews = await self._preview_times(cids)
        out = []
        for row in rows:
            changes = recent.get(row.camera_id, [])
            ups = {
                name: uptime(
                    changes,
                    start=now - WINDOWS_S[name],
                    end=now,
                    current=row.state,
                    known_since=row.registered,
                ).ratio
                for name in ("24h", "7d")
            }
            out.append(
                replace(
                    row,
                    uptime_24h=ups["24h"],
                    uptime_7d=ups["7d"],
                    last_snapshot=previews.get(row.camera_id),
                )
            )
        return out

    async def _recent_changes(
        self, cids: Sequence[str], start: float, end: float
    ) -> dict[str, list[Change]]:
        ids_by_camera: dict[str, list[str]] = {}
        for first in range(0, len(cids), CHUNK):
            chunk = cids[first : first + CHUNK]
            async with self.redis.pipeline(transaction=False) as pipe:
                for cid in chunk:
                    pipe.zrangebyscore(keys.camera_events(cid), start, end)
                answers = await pipe.execute()
            for cid, ids in zip(chunk, answers, strict=True):
                if ids:
                    ids_by_camera[cid] = [str(i) for i in ids]
        flat = [eid for ids in ids_by_camera.values() for eid in ids]
        changes: dict[str, list[Change]] = {}
        for first in range(0, len(flat), CHUNK):
            raws = await self.redis.mget([keys.event(e) for e in flat[first : first + CHUNK]])
            for raw in raws:
                if raw is not None:
                    event = Event.model_validate_json(raw)
                    changes.setdefault(event.camera_id, []).append(
                        Change(event.t, event.from_state, event.to_state)
                    )
        return changes

    async def _preview_times(self, cids: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for first in range(0, len(cids), CHUNK):
            chunk = cids[first : first + CHUNK]
            async with self.redis.pipeline(transaction=False) as pipe:
                for cid in chunk:
                    pipe.hget(keys.camera_preview(cid), "t")
                answers = await pipe.execute()
            for cid, raw in zip(chunk, answers, strict=True):
                if raw is not None:
                    try:
                        out[cid] = float(raw)
                    except ValueError:
                        continue
        return out

    async def events(self, f: EventFilters, limit: int = EVENTS_EXPORT_MAX) -> list[Event]:
        """Events passing ``f``, newest first, at most ``limit``."""
        return [e async for e in self._events(f, limit)]

    async def _events(self, f: EventFilters, limit: int) -> AsyncIterator[Event]:
        if f.camera:
            index = keys.camera_events(f.camera)
        elif f.restaurant:
            index = keys.restaurant_events(f.restaurant)
        else:
            index = keys.EVENTS
        before: tuple[float, str] | None = None
        if f.until is not None:
            before = (f.until, "\uffff")
        since = f.since if f.since is not None else 0.0
        sent = 0
        while sent < limit:
            batch = await self.store.event_page(index, before, since, EVENT_BATCH)
            if not batch:
                return
            for event in batch:
                before = (event.t, event.id)
                if f.keeps(event):
                    yield event
                    sent += 1
                    if sent >= limit:
                        return

    async def camera_events(self, cid: str, limit: int = 200) -> list[Event]:
        """The camera's newest events, newest first."""
        return await self.events(EventFilters(camera=cid), limit)

    async def names(self, cids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Camera and restaurant names by camera id (for exports)."""
        unique = sorted(set(cids))
        cameras: list[Camera] = []
        for first in range(0, len(unique), CHUNK):
            raws: Any = await self.redis.mget(
                [keys.camera(c) for c in unique[first : first + CHUNK]]
            )
            cameras.extend(Camera.model_validate_json(r) for r in raws if r is not None)
        restaurants = await self.restaurants([c.restaurant_id for c in cameras])
        return {
            c.id: (
                c.name,
                restaurants[c.restaurant_id].name if c.restaurant_id in restaurants else "",
            )
            for c in cameras
        }
