"""Roles running in this process (web, relay, checker) and their heartbeats in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kitchencam import keys
from kitchencam.redisconn import RedisOutage

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
CANCEL_RETRY_S = 1.0
CANCEL_ATTEMPTS = 30
ROLE_NAMES = ("web", "relay", "checker")


def instance_name() -> str:
    """This process's name in Redis: host name and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class RoleState:
    """How one role of this process is doing."""

    name: str
    running: bool = False
    since: float = field(default_factory=time.time)
    detail: str = "starting"


class RoleSet:
    """The roles this process runs, and their states for ``/healthz``."""

    def __init__(self, names: tuple[str, ...], instance: str) -> None:
        self.instance = instance
        self.states = {name: RoleState(name) for name in names}

    def set(self, name: str, running: bool, detail: str) -> None:
        """Record a role's state."""
        state = self.states[name]
        if state.running != running or state.detail != detail:
            state.running, state.detail, state.since = running, detail, time.time()

    def healthy(self) -> bool:
        """Whether every role is running."""
        return all(s.running for s in self.states.values())


async def heartbeat(redis: Redis, roles: RoleSet) -> None:
    """Write this process's role heartbeats to Redis until cancelled; survives Redis outages."""
    outage = RedisOutage(f"heartbeats of {roles.instance}", log)
    while True:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for name, state in roles.states.items():
                    pipe.set(
                        keys.role_heartbeat(name, roles.instance),
                        f"{state.detail}",
                        ex=keys.ROLE_HEARTBEAT_TTL_S,
                    )
                await pipe.execute()
            outage.recovered()
        except (RedisError, OSError) as err:
            await asyncio.sleep(min(outage.failed(err), HEARTBEAT_INTERVAL_S))
            continue
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until each has ended.

    A cancellation can be lost on Python 3.11 when it races an ``asyncio.timeout`` inside a
    library (redis-py uses them), and the task then carries on; cancelling again until it
    ends makes shutdown certain.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(CANCEL_ATTEMPTS):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_RETRY_S)
    for task in pending:
        log.error("task %s did not stop after %s cancellations", task.get_name(), CANCEL_ATTEMPTS)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("task %s ended with %r", task.get_name(), task.exception())


@contextlib.asynccontextmanager
async def running_task(
    name: str, body: Coroutine[None, None, None]
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``body`` as a task for the duration of the context; cancel and await it after."""
    task = asyncio.create_task(body, name=name)
    try:
        yield task
    finally:
        await cancel_and_wait(task)
