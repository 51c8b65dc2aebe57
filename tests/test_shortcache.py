"""The short shared cache: one load per key for concurrent askers, expiry, errors not kept."""

from __future__ import annotations

import asyncio

import pytest

from kitchencam.shortcache import ShortCache


async def test_concurrent_askers_share_one_load_and_reuse_it_while_fresh() -> None:
    cache: ShortCache[int] = ShortCache(ttl_s=60.0)
    loads = 0
    started, release = asyncio.Event(), asyncio.Event()

    async def load() -> int:
        nonlocal loads
        loads += 1
        started.set()
        await release.wait()
        return 42

    askers = [asyncio.create_task(cache.get("r1", load)) for _ in range(50)]
    await asyncio.wait_for(started.wait(), timeout=5.0)
    release.set()
    assert await asyncio.gather(*askers) == [42] * 50
    assert await cache.get("r1", load) == 42
    assert loads == 1


async def test_an_expired_value_is_loaded_again() -> None:
    cache: ShortCache[int] = ShortCache(ttl_s=0.0)
    values = iter(range(10))

    async def load() -> int:
        return next(values)

    assert [await cache.get("k", load) for _ in range(3)] == [0, 1, 2]


async def test_a_failed_load_reaches_every_asker_and_is_not_kept() -> None:
    cache: ShortCache[int] = ShortCache(ttl_s=60.0)

    async def fail() -> int:
        await asyncio.sleep(0)
        raise OSError("redis down")

    results = await asyncio.gather(
        cache.get("k", fail), cache.get("k", fail), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results)

    async def ok() -> int:
        return 7

    assert await cache.get("k", ok) == 7


async def test_an_asker_going_away_does_not_cancel_the_load_for_others() -> None:
    cache: ShortCache[int] = ShortCache(ttl_s=60.0)
    started, release = asyncio.Event(), asyncio.Event()

    async def load() -> int:
        started.set()
        await release.wait()
        return 5

    first = asyncio.create_task(cache.get("k", load))
    second = asyncio.create_task(cache.get("k", load))
    await asyncio.wait_for(started.wait(), timeout=5.0)
    first.cancel()
    release.set()
    assert await second == 5
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_the_cache_holds_at_most_max_keys() -> None:
    cache: ShortCache[str] = ShortCache(ttl_s=60.0, max_keys=3)
    for key in "abcde":

        async def load(key: str = key) -> str:
            return key

        await cache.get(key, load)
    assert len(cache) == 3
