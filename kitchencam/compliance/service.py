"""The compliance side of a process: what the relay, the checker and the API share.

:func:`build` makes it once per process (the app factory calls it); the relay role uses its
observer factory, the checker role runs :func:`run`, and the API reads through its store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from kitchencam.addresses import Resolver
from kitchencam.compliance.checker import Checker
from kitchencam.compliance.frames import JpegSnapshot
from kitchencam.compliance.sampler import KeyframeSampler, Observers
from kitchencam.compliance.store import ComplianceStore, Reference
from kitchencam.compliance.webhooks import Deliverer, Webhooks
from kitchencam.models import Camera
from kitchencam.registry import Registry
from kitchencam.roles import RoleSet
from kitchencam.secretbox import SecretBox
from kitchencam.settings import Settings


class ReferenceUnavailable(Exception):
    """No picture to approve as a reference view: ``status`` 422 when the picture named is not
    one of the camera's, 409 when the camera has no recent preview."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Compliance:
    """The compliance store, webhooks, and (in a relay) the observer factory."""

    store: ComplianceStore
    webhooks: Webhooks
    registry: Registry
    settings: Settings
    instance: str
    observers: Observers

    def make_observer(self, camera: Camera) -> KeyframeSampler:
        """The relay hub's observer factory: a started sampler for one camera."""
        return self.observers.make_observer(camera)

    async def approve_reference(self, camera: Camera, snapshot: str | None, by: str) -> Reference:
        """Approve a stored picture of ``camera`` (by SHA-256) or, without one, its current
        preview as its reference view; ``ReferenceUnavailable`` when there is no such picture."""
        if snapshot:
            snap = await self.store.snapshot(snapshot)
            if snap is None or snap.camera_id != camera.id:
                raise ReferenceUnavailable(
                    422, "that snapshot is not a stored picture of this camera"
                )
            jpeg = JpegSnapshot.of(snap.jpeg)
        else:
            preview = await self.store.preview(camera.id)
            if preview is None:
                raise ReferenceUnavailable(
                    409, "no recent picture of this camera to approve; try again later"
                )
            jpeg = preview[0]
        return await self.store.approve_reference(camera.id, camera.restaurant_id, jpeg, by)


def build(
    settings: Settings,
    redis: Redis,
    registry: Registry,
    box: SecretBox,
    resolver: Resolver,
    instance: str,
) -> Compliance:
    """Everything compliance needs in this process; nothing connects yet."""
    store = ComplianceStore(redis, settings.event_retention_days)
    hooks = Webhooks(redis, box, settings.webhook_allow_networks, resolver)
    observers = Observers(
        store,
        instance,
        interval_s=settings.sample_interval_s,
        threads=settings.analysis_threads,
    )
    return Compliance(store, hooks, registry, settings, instance, observers)


async def run(compliance: Compliance, roles: RoleSet) -> None:
    """The checker role: consume compliance news and deliver webhooks, until cancelled."""
    roles.set("checker", True, "starting")
    checker = Checker(compliance.store, compliance.registry, compliance.instance)
    deliverer = Deliverer(
        compliance.webhooks,
        compliance.instance,
        retry_s=compliance.settings.webhook_retry_s,
        timeout_s=compliance.settings.webhook_timeout_s,
    )
    await asyncio.gather(checker.run(roles), deliverer.run())
