"""The relay role: for now it tracks which cameras it must pull (ingest lands with the relay)."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from kitchencam.registry import Registry
from kitchencam.roles import RoleSet

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 5.0


async def run(registry: Registry, roles: RoleSet) -> None:
    """Keep the role's state current with the number of enabled cameras, until cancelled."""
    while True:
        try:
            enabled = sum(c.enabled for c in await registry.list_cameras())
            roles.set("relay", True, f"{enabled} enabled cameras registered")
        except (RedisError, OSError) as err:
            roles.set("relay", True, f"waiting for Redis ({type(err).__name__})")
        await asyncio.sleep(POLL_INTERVAL_S)
