"""Camera leases on the real Redis: claim, renew, release, fencing tokens and fenced writes;
and the pure fair-share decisions as tables."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from kitchencam import keys
from kitchencam.compliance.sampler import Observers
from kitchencam.compliance.store import ComplianceStore
from kitchencam.relay import share
from kitchencam.relay.claims import SAFETY_SAMPLE, SAFETY_SCAN_S, Claims, LeasePolicy
from kitchencam.relay.leases import (
    Holder,
    Lease,
    LeaseLost,
    LeaseStore,
    Roster,
    holder,
    lease_value,
)
from kitchencam.settings import SettingsError, load_settings

TTL_S = 8.0


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: aioredis.Redis) -> LeaseStore:
    return LeaseStore(redis)


async def test_claim_takes_a_free_camera_with_a_growing_fence(
    store: LeaseStore, redis: aioredis.Redis
) -> None:
    first = await store.claim("cam1", "relay-a", TTL_S)
    assert first == Lease("cam1", "relay-a", 1)
    assert await redis.get(keys.lease("cam1")) == "relay-a 1"
    assert 7000 < await redis.pttl(keys.lease("cam1")) <= 8000
    assert await store.claim("cam1", "relay-b", TTL_S) is None  # held: nobody else gets it
    assert await redis.get(keys.fence("cam1")) == "1"  # a refused claim takes no fence
    assert await store.release(first)
    second = await store.claim("cam1", "relay-b", TTL_S)
    assert second == Lease("cam1", "relay-b", 2)


async def test_renew_extends_only_our_own_lease(store: LeaseStore, redis: aioredis.Redis) -> None:
    ours = await store.claim("cam1", "relay-a", TTL_S)
    gone = await store.claim("cam2", "relay-a", TTL_S)
    taken = await store.claim("cam3", "relay-a", TTL_S)
    assert ours is not None and gone is not None and taken is not None
    await redis.pexpire(keys.lease("cam1"), 1000)
    await redis.delete(keys.lease("cam2"))
    await redis.set(keys.lease("cam3"), lease_value("relay-b", 9), px=5000)
    results = await store.renew([ours, gone, taken], TTL_S)
    assert [(r.renewed, r.other) for r in results] == [
        (True, None),
        (False, None),
        (False, "relay-b 9"),
    ]
    assert await redis.pttl(keys.lease("cam1")) > 7000
    assert await redis.get(keys.lease("cam3")) == "relay-b 9"  # the other holder is untouched
    assert await redis.pttl(keys.lease("cam3")) <= 5000


async def test_only_the_holder_releases(store: LeaseStore, redis: aioredis.Redis) -> None:
    lease = await store.claim("cam1", "relay-a", TTL_S)
    assert lease is not None
    assert not await store.release(Lease("cam1", "relay-b", lease.fence))
    assert not await store.release(Lease("cam1", "relay-a", lease.fence + 1))
    assert await redis.get(keys.lease("cam1")) == lease.value
    assert await store.release(lease)
    assert await redis.get(keys.lease("cam1")) is None
    assert not await store.release(lease)


async def test_fenced_writes_apply_atomically_while_the_lease_holds(
    store: LeaseStore, redis: aioredis.Redis
) -> None:
    lease = await store.claim("cam1", "relay-a", TTL_S)
    assert lease is not None
    batch = store.batch(lease)
    batch.set(keys.live("cam1"), '{"fps": 25}', ex=20)
    batch.hset(keys.camera_preview("cam1"), {"jpeg": "abc", "t": 1.5})
    batch.expire(keys.camera_preview("cam1"), 60)
    batch.zadd(keys.HELD, {"cam1": 123.0})
    batch.xadd(keys.TRANSITIONS, {"kind": "held", "camera": "cam1"}, maxlen=1000)
    replies = await batch.execute()
    assert len(batch) == 5 and len(replies) == 5
    assert replies[0] == "OK" and replies[1] == 2 and replies[3] == 1
    entries = await redis.xrange(keys.TRANSITIONS) or []
    assert [(i, d) for i, d in entries] == [(replies[4], {"kind": "held", "camera": "cam1"})]
    assert await redis.get(keys.live("cam1")) == '{"fps": 25}'
    assert 0 < await redis.ttl(keys.live("cam1")) <= 20
    assert await redis.hgetall(keys.camera_preview("cam1")) == {"jpeg": "abc", "t": "1.5"}
    assert await redis.zscore(keys.HELD, "cam1") == 123.0


async def test_fenced_write_refused_after_the_lease_is_stolen(
    store: LeaseStore, redis: aioredis.Redis
) -> None:
    lease = await store.claim("cam1", "relay-a", TTL_S)
    assert lease is not None
    await redis.set(keys.lease("cam1"), lease_value("relay-b", lease.fence + 1), px=8000)
    batch = store.batch(lease).set(keys.live("cam1"), "stale").xadd(keys.TRANSITIONS, {"k": "v"})
    with pytest.raises(LeaseLost):
        await batch.execute()
    assert await redis.get(keys.live("cam1")) is None
    assert await redis.xlen(keys.TRANSITIONS) == 0
    # An old lease of the same relay (an earlier fence) is refused as well.
    await redis.set(keys.lease("cam1"), lease_value("relay-a", lease.fence + 2))
    with pytest.raises(LeaseLost):
        await store.batch(lease).set(keys.live("cam1"), "stale").execute()
    # Many cameras in one round trip: only the stolen one is refused.
    other = await store.claim("cam2", "relay-a", TTL_S)
    assert other is not None
    refused = await store.run_batches(
        [
            store.batch(lease).set(keys.live("cam1"), "x"),
            store.batch(other).set(keys.live("cam2"), "y"),
        ]
    )
    assert [b.lease for b in refused] == [lease]
    assert await redis.get(keys.live("cam2")) == "y" and await redis.get(keys.live("cam1")) is None


async def test_advertisement_routes_to_the_holder(store: LeaseStore, redis: aioredis.Redis) -> None:
    first = await store.advertise("relay-a", "http://127.0.0.1:9001", 10, 0, TTL_S)
    assert first is not None and (first.capacities, first.held) == ({10: 1}, 0)
    assert time.time() < first.expires <= time.time() + TTL_S
    # The summary is shared: relay-b reads relay-a's until it runs out (or is dropped).
    cached = await store.advertise("relay-b", "http://127.0.0.1:9002", 5, 2, TTL_S)
    assert cached == first
    both = await store.advertise("relay-b", "http://127.0.0.1:9002", 5, 2, TTL_S, fresh=True)
    assert both is not None and (both.capacities, both.held, both.relays) == ({10: 1, 5: 1}, 2, 2)
    await redis.zadd(keys.RELAYS, {"relay-dead": 1.0})  # ran out long ago
    await store.advertise("relay-a", "http://127.0.0.1:9001", 10, 1, TTL_S)
    assert await redis.zscore(keys.RELAYS, "relay-dead") is None
    lease = await store.claim("cam1", "relay-b", TTL_S)
    assert lease is not None
    assert await holder(redis, "cam1") == holder_of("relay-b", lease.fence, "http://127.0.0.1:9002")
    await store.withdraw("relay-b")
    assert await redis.zrange(keys.RELAYS, 0, -1) == ["relay-a"]
    assert await redis.get(keys.RELAYS_SUMMARY) is None  # the next reader recomputes it
    alone = await store.roster("relay-a")
    assert alone is not None and (alone.capacities, alone.held) == ({10: 1}, 1)
    assert await holder(redis, "cam1") == holder_of("relay-b", lease.fence, None)
    assert await holder(redis, "cam2") is None


def holder_of(relay_id: str, fence: int, url: str | None) -> Holder:
    return Holder(relay_id, fence, url)


async def test_claims_reclaim_a_vanished_lease_and_give_up_a_stolen_one(
    store: LeaseStore, redis: aioredis.Redis
) -> None:
    claims = Claims(store, LeasePolicy("relay-a", "http://127.0.0.1:9001", 10, TTL_S))
    for cid in ("cam1", "cam2", "cam3"):
        assert await claims.claim(cid) is not None
    await redis.delete(keys.lease("cam2"))  # e.g. Redis restarted without it
    await redis.set(keys.lease("cam3"), "relay-b 7")
    losses = await claims.renew()
    assert [(x.camera_id, x.why) for x in losses] == [("cam3", "lease now held by relay-b 7")]
    assert sorted(claims.held) == ["cam1", "cam2"]
    assert claims.held["cam2"].fence == 2  # a new fence for the re-claimed lease
    assert await redis.get(keys.lease("cam2")) == "relay-a 2"
    assert (claims.claimed, claims.lost) == (3, 1)
    assert not claims.may_claim()  # one renewal interval after connecting
    advert = await redis.get(keys.relay("relay-a"))
    assert (
        advert is not None and '"held": 2' in advert and '"url": "http://127.0.0.1:9001"' in advert
    )
    with pytest.raises(LeaseLost):
        claims.fenced("cam3")
    assert claims.capacities() == {10: 1} and claims.held_total() == 2
    await store.advertise("relay-b", "http://127.0.0.1:9002", 4, 0, TTL_S)
    await claims.advertise(fresh=True)
    assert claims.capacities() == {10: 1, 4: 1} and claims.held_total() == 2
    # Once relay-b's advertisement runs out, the next look at the summary recomputes it.
    await redis.zadd(keys.RELAYS, {"relay-b": time.time() - 1})
    assert claims.roster is not None
    ran_out = dataclasses.replace(claims.roster, expires=time.time() - 0.1)
    await redis.set(keys.RELAYS_SUMMARY, ran_out.to_json())
    claims.roster = ran_out
    assert claims.scan_due(2)  # a first look after connecting
    await claims.find_free(["cam1", "cam2"], 1)
    assert not claims.scan_due(2)  # all held: no need to read the leases
    await claims.watch_roster()
    assert claims.capacities() == {10: 1}
    assert claims.scan_due(2)  # a relay vanished: its cameras may be free
    await claims.release_all()
    assert (
        await redis.get(keys.lease("cam1")) is None
        and await redis.get(keys.relay("relay-a")) is None
    )
    assert await redis.zrange(keys.RELAYS, 0, -1) == ["relay-b"]


# -- the pure decisions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cameras", "capacities", "fair"),
    [
        (0, [10], 0),
        (1, [10], 1),
        (4, [10, 10], 2),
        (5, [10, 10], 3),
        (4, [10, 10, 10], 2),
        (7, [10] * 7, 1),
        (6, [10] * 8, 1),
        (10, [100, 1], 9),  # a small relay full, the big one takes the rest
        (10, [3, 3, 100], 4),
        (50, [10, 10], 10),  # more cameras than room: everyone full
        (3, [], 3),
    ],
)
def test_fair_share(cameras: int, capacities: list[int], fair: int) -> None:
    assert share.fair_share(cameras, Counter(capacities)) == fair


@pytest.mark.parametrize(
    ("held", "cameras", "capacities", "claim", "hand_over"),
    [
        (0, 4, [10, 10], 2, 0),  # a new relay takes its fair share
        (2, 4, [10, 10], 0, 0),  # at its share: nothing to do
        (0, 4, [10], 4, 0),  # alone: everything
        (0, 4, [3], 3, 0),  # ...up to its capacity
        (3, 4, [10, 10], 0, 0),  # fair share + 1 is tolerated (no bouncing)
        (4, 4, [10, 10], 0, 1),  # more: hand one over per scan
        (10, 10, [100] * 5, 0, 1),  # fair 2: hand over gradually, one at a time
        (9, 10, [10, 1], 0, 0),  # the other relay is full: keep them
        (0, 100, [1000], 20, 0),  # many free cameras: a few claims per scan
        (1, 5, [10, 10], 2, 0),  # fair 3
        (0, 0, [10, 10, 10], 0, 0),  # no cameras
    ],
)
def test_plan(held: int, cameras: int, capacities: list[int], claim: int, hand_over: int) -> None:
    own = capacities[0]
    assert share.plan(held, cameras, Counter(capacities), own) == share.Plan(claim, hand_over)


def test_plan_over_capacity_hands_over() -> None:
    assert share.plan(5, 6, {3: 1}, 3) == share.Plan(0, 1)


def test_claim_order_differs_between_relays_and_is_stable() -> None:
    free = [f"cam{i}" for i in range(20)]
    a = share.claim_order("relay-a", free)
    assert sorted(a) == sorted(free) and a == share.claim_order("relay-a", reversed(free))
    assert a != share.claim_order("relay-b", free)


@pytest.mark.parametrize(
    ("viewers", "order"),
    [
        ({"a": 3, "b": 0, "c": 1}, ["b", "c", "a"]),
        ({"b": 0, "a": 0}, ["a", "b"]),
        ({}, []),
    ],
)
def test_hand_over_order_prefers_cameras_without_viewers(
    viewers: dict[str, int], order: list[str]
) -> None:
    assert share.hand_over_order(viewers) == order


async def test_compliance_writes_are_fenced_by_the_camera_lease(
    store: LeaseStore, redis: aioredis.Redis
) -> None:
    claims = Claims(store, LeasePolicy("relay-a", "http://127.0.0.1:9001", 10, TTL_S))
    observers = Observers(ComplianceStore(redis), "relay-a", threads=1)
    observers.use_leases(claims)
    try:
        assert await claims.claim("cam1") is not None
        await observers.write("cam1", lambda p: observers.store.stage_held(p, ["cam1"], "relay-a"))
        assert await redis.get(keys.camera_relay("cam1")) == "relay-a"
        await redis.set(keys.lease("cam1"), "relay-b 5")
        await redis.delete(keys.camera_relay("cam1"))
        claims.wake.clear()
        with pytest.raises(LeaseLost):
            await observers.write(
                "cam1", lambda p: observers.store.stage_held(p, ["cam1"], "relay-a")
            )
        assert await redis.get(keys.camera_relay("cam1")) is None
        assert claims.wake.is_set()  # the hub is told to check its lease at once
        with pytest.raises(LeaseLost):  # a camera this relay holds no lease on
            await observers.write("cam2", lambda p: None)
    finally:
        await observers.aclose()


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://127.0.0.1:8080"),
        ({"KITCHENCAM_HOST": "0.0.0.0", "KITCHENCAM_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"KITCHENCAM_HOST": "::", "KITCHENCAM_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"KITCHENCAM_HOST": "10.0.0.5"}, "http://10.0.0.5:8080"),
        ({"KITCHENCAM_HOST": "fd00::5"}, "http://[fd00::5]:8080"),
        ({"KITCHENCAM_RELAY_URL": "http://127.0.0.1:8123/"}, "http://127.0.0.1:8123"),
    ],
)
def test_advertised_relay_url(env: dict[str, str], url: str) -> None:
    assert load_settings(env).advertised_relay_url == url


@pytest.mark.parametrize("bad", ["ftp://relay", "relay:8080", "http://", "http://a b"])
def test_relay_url_must_be_an_http_base_url(bad: str) -> None:
    with pytest.raises(SettingsError, match="KITCHENCAM_RELAY_URL"):
        load_settings({"KITCHENCAM_RELAY_URL": bad})


async def test_one_call_renews_every_lease_and_one_call_fences_every_camera(
    store: LeaseStore, redis: aioredis.Redis
) -> None:
    leases = [await store.claim(f"cam{i}", "relay-a", TTL_S) for i in range(5)]
    held = [lease for lease in leases if lease is not None]
    assert len(held) == 5
    await store.renew(held, TTL_S)  # the scripts are loaded: no NOSCRIPT retry below
    await store.run_batches([store.batch(held[0])])
    await redis.set(keys.lease("cam2"), lease_value("relay-b", 99), px=8000)  # stolen
    await redis.config_resetstat()
    renewals = await store.renew(held, TTL_S)
    assert [(r.renewed, r.other) for r in renewals] == [
        (True, None),
        (True, None),
        (False, "relay-b 99"),
        (True, None),
        (True, None),
    ]
    batches = []
    for lease in held:  # the relay's interval: figures and the compliance hold, per camera
        batch = store.batch(lease).set(keys.live(lease.camera_id), "figures", ex=20)
        ComplianceStore.stage_held(batch, [lease.camera_id], "relay-a")
        batches.append(batch)
    refused = await store.run_batches(batches)
    stats = await redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 2  # one renewal call, one fenced call
    assert [b.lease.camera_id for b in refused] == ["cam2"]
    assert await redis.get(keys.live("cam2")) is None
    assert await redis.get(keys.camera_relay("cam2")) is None
    assert await redis.zscore(keys.HELD, "cam2") is None
    for cid in ("cam0", "cam1", "cam3", "cam4"):
        assert await redis.get(keys.live(cid)) == "figures"
        assert await redis.get(keys.camera_relay(cid)) == "relay-a"
        assert await redis.zscore(keys.HELD, cid) is not None


async def test_a_relay_reads_the_leases_only_when_a_camera_can_be_free(
    store: LeaseStore, redis: aioredis.Redis
) -> None:
    now = [100.0]
    policy = LeasePolicy("relay-a", "http://127.0.0.1:9001", 10, TTL_S)
    claims = Claims(store, policy, clock=lambda: now[0])
    assert await claims.claim("cam1") is not None
    await claims.renew()
    await redis.config_resetstat()
    assert await claims.find_free(["cam1"], 1) == []  # just (re)connected: one full look
    assert await claims.find_free(["cam1"], 1) == []  # every enabled camera held: no look
    assert await lease_mgets(redis) == 1
    # Fewer cameras held than enabled: the look is shared through the fleet's free list (at
    # most one relay reads every lease per FREE_LIST_S; here that time has passed).
    await redis.delete(keys.FREE_CAMERAS_LOCK)
    assert await claims.find_free(["cam1", "cam2", "cam3"], 1) == ["cam2", "cam3"]
    assert sorted(await redis.smembers(keys.FREE_CAMERAS)) == ["cam2", "cam3"]
    other = Claims(store, LeasePolicy("relay-b", "http://127.0.0.1:9002", 10, TTL_S))
    await other.renew()
    await redis.config_resetstat()
    assert sorted(await other.find_free(["cam1", "cam2", "cam3"], 1)) == ["cam2", "cam3"]
    assert await lease_mgets(redis) == 0  # relay-b drew from relay-a's list, read no lease
    assert await other.claim("cam2") is not None  # a claim takes the camera off the list
    assert await redis.smembers(keys.FREE_CAMERAS) == {"cam3"}
    claims.rescan()  # e.g. a registry change, a relay vanished, a lease lost
    assert await claims.find_free(["cam1"], 1) == []
    now[0] += SAFETY_SCAN_S  # a safety look: a random sample of at most SAFETY_SAMPLE
    many = [f"new{i}" for i in range(SAFETY_SAMPLE + 500)]
    await redis.set(  # the summary (wrongly) counts every one of them as held
        keys.RELAYS_SUMMARY,
        dataclasses.replace(claims.roster or Roster({}, 0, 0, 0), held=len(many)).to_json(),
    )
    await claims.advertise()
    await redis.config_resetstat()
    found = await claims.find_free(many, 1)
    assert len(found) == SAFETY_SAMPLE and await lease_mgets(redis) == 1  # one MGET, a sample
    assert await claims.find_free(many, 1) == []
    assert await lease_mgets(redis) == 1


async def lease_mgets(redis: aioredis.Redis) -> int:
    """``MGET`` calls since the last ``CONFIG RESETSTAT`` (here: reads of leases)."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))
