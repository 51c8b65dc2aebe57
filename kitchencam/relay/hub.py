"""The relay role: which cameras this process pulls, their streams, viewers and figures.

It follows the registry (the ``kc:changes`` stream for promptness, a full resync as a
safety net), runs one supervised ingest per enabled camera (and one for its sub-stream when
it has one, which then feeds the compliance observer), and publishes per-camera figures to
Redis for the API. Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kitchencam import keys
from kitchencam.addresses import AddressPolicy, StreamAddress
from kitchencam.models import Camera
from kitchencam.registry import Registry
from kitchencam.relay.media import StreamObserver
from kitchencam.relay.stream import CameraStream
from kitchencam.relay.supervisor import Supervisor
from kitchencam.relay.webrtc import IceSettings, ViewerHub
from kitchencam.roles import RoleSet, cancel_and_wait

log = logging.getLogger(__name__)

RESYNC_INTERVAL_S = 10.0
# Registry changes are polled, not read with XREAD BLOCK: a blocking read cancelled at
# shutdown can leave redis-py's task cancelling forever (seen with redis-py 8.1).
CHANGES_POLL_S = 1.0
FIGURES_INTERVAL_S = 5.0
LIVE_TTL_S = 20
REDIS_RETRY_S = 2.0

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
    """Pulls every enabled camera once and serves its viewers."""

    def __init__(
        self,
        registry: Registry,
        redis: Redis,
        policy: AddressPolicy,
        viewers: ViewerHub,
        ice: IceSettings,
        observer_factory: ObserverFactory | None = None,
    ) -> None:
        self._registry = registry
        self._redis = redis
        self._policy = policy
        self.viewers = viewers
        self.ice = ice
        self._observer_factory = observer_factory
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
        """Follow the registry and publish figures until cancelled."""
        figures = asyncio.create_task(self._publish_figures(), name="relay-figures")
        try:
            await self._follow(roles)
        finally:
            await cancel_and_wait(figures)
            await self.close()

    async def _follow(self, roles: RoleSet) -> None:
        last_id = "$"
        next_resync = 0.0
        while True:
            try:
                if time.monotonic() >= next_resync:
                    last_id = await self._last_change_id()
                    await self.sync(await self._registry.all_cameras())
                    next_resync = time.monotonic() + RESYNC_INTERVAL_S
                    roles.set("relay", True, f"pulling {len(self._pulls)} cameras")
                entries: Any = await self._redis.xread({keys.CHANGES: last_id}, count=1000)
                for _, messages in entries or []:
                    for entry_id, data in messages:
                        last_id = entry_id
                        if data.get("kind") == "camera":
                            await self.sync_one(data["id"])
                roles.set("relay", True, f"pulling {len(self._pulls)} cameras")
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
        """Pull exactly the enabled cameras in ``cameras``."""
        wanted = {c.id: c for c in cameras if c.enabled}
        for cid in [cid for cid in self._pulls if cid not in wanted]:
            await self._stop(cid, "no longer enabled or registered")
        for camera in wanted.values():
            self._ensure(camera)

    async def sync_one(self, camera_id: str) -> None:
        """Bring one camera in line with the registry."""
        try:
            camera = await self._registry.get_camera(camera_id)
        except Exception:
            camera = None
        if camera is None or not camera.enabled:
            if camera_id in self._pulls:
                await self._stop(camera_id, "disabled or deleted")
            return
        self._ensure(camera)

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
        log.info("camera %s of restaurant %s: pulling", camera.id, camera.restaurant_id)

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

    async def _stop(self, camera_id: str, why: str) -> None:
        pull = self._pulls.pop(camera_id)
        self._cancel(pull)
        await cancel_and_wait(*pull.tasks)
        await self.viewers.close_camera(camera_id)
        pull.main.close()
        log.info("camera %s: stopped pulling (%s)", camera_id, why)

    async def close(self) -> None:
        """Stop every ingest and viewer (waits for the ingest threads to end)."""
        for pull in self._pulls.values():
            self._cancel(pull)
        await cancel_and_wait(*(t for p in self._pulls.values() for t in p.tasks))
        await self.viewers.close_all()
        for pull in self._pulls.values():
            pull.main.close()
        self._pulls.clear()

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
        """One batch of figures, in one pipeline."""
        if not self._pulls:
            return
        now = time.monotonic()
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid, pull in self._pulls.items():
                pipe.set(keys.live(cid), json.dumps(pull.main.figures(now)), ex=LIVE_TTL_S)
            await pipe.execute()
