"""Failure injection: the real checker, made to hang between reading and acknowledging news.

Run as ``python tests/support/crashing_checker.py REDIS_URL CONSUMER``. It runs the real
:class:`~kitchencam.compliance.checker.Checker` loop against that Redis, as consumer
``CONSUMER`` of the ``checkers`` group. Every ``kc:transitions`` entry it gets from
``XREADGROUP`` is printed as ``READ <id>``; it then applies the first one as usual, but its
``XACK`` never returns: it prints ``HANG <id>`` and waits forever, so the batch stays pending
with this consumer until the test SIGKILLs the process.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import redis.asyncio as aioredis

from kitchencam import keys
from kitchencam.addresses import AddressPolicy
from kitchencam.compliance.checker import Checker
from kitchencam.compliance.store import ComplianceStore
from kitchencam.registry import Registry
from kitchencam.secretbox import SecretBox, generate_key


class CrashBeforeAckRedis:
    """Failure injection: the real Redis client, except that acknowledging a compliance news
    entry hangs forever (the process is killed there)."""

    def __init__(self, real: aioredis.Redis) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def xack(self, stream: str, group: str, *ids: str) -> Any:
        if stream == keys.TRANSITIONS:
            print("HANG", *ids, flush=True)
            await asyncio.Event().wait()  # never set: killed here, before the XACK
        return await self._real.xack(stream, group, *ids)


class CrashAfterReadChecker(Checker):
    """Failure injection: the real checker, reporting every news entry it has read."""

    async def _handle(self, got: Any) -> int:
        for stream, messages in got or []:
            if stream == keys.TRANSITIONS:
                for entry_id, _ in messages:
                    print("READ", entry_id, flush=True)
        return await super()._handle(got)


async def main(redis_url: str, consumer: str) -> None:
    real = aioredis.Redis.from_url(redis_url, decode_responses=True)
    registry = Registry(real, SecretBox(generate_key()), AddressPolicy())
    store = ComplianceStore(CrashBeforeAckRedis(real))  # type: ignore[arg-type]
    print("STARTED", consumer, flush=True)
    await CrashAfterReadChecker(store, registry, consumer).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
