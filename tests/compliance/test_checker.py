"""The checker role against real Redis: news applied exactly once, published states, events,
unmonitored when a relay's hold runs out (never offline), disabled from the registry, and a
checker killed between reading and acknowledging."""

from __future__ import annotations

import json
from typing import Any

from kitchencam import keys
from kitchencam.compliance.checker import Checker
from kitchencam.compliance.frames import JpegSnapshot
from kitchencam.compliance.records import Kind, News
from kitchencam.compliance.states import State
from kitchencam.models import CameraUpdate


def monitor_news(cid: str, t: float, old: str, new: str, **extra: Any) -> News:
    return News(
        kind=Kind.MONITOR,
        camera=cid,
        t=t,
        from_state=old,
        to_state=new,
        cause=extra.pop("cause", new),
        detail=extra.pop("detail", f"{new} for 4 s"),
        relay="relay-1",
        **extra,
    )


async def held(world: Any, t: float = 1000.0) -> None:
    """A relay starts analysing the camera (its monitor says ok) and holds it."""
    await world.store.refresh_held([world.camera.id], "relay-1")
    news = News(kind=Kind.HELD, camera=world.camera.id, t=t, to_state="ok", relay="relay-1")
    await world.store.publish(news, (), world.restaurant.id)


async def test_monitor_news_become_state_and_event_with_evidence(world: Any) -> None:
    checker = Checker(world.store, world.registry, "checker-a")
    await checker.ensure_groups()
    await held(world)
    snap = JpegSnapshot.of(b"\xff\xd8 deciding frame \xff\xd9")
    good = JpegSnapshot.of(b"\xff\xd8 last good frame \xff\xd9")
    news = monitor_news(
        world.camera.id,
        1010.0,
        "ok",
        "covered",
        measures={"texture.detail": 0.01},
        snapshot=snap.sha256,
        last_good=good.sha256,
    )
    await world.store.publish(news, [snap, good], world.restaurant.id)
    while await checker.read_once(block_ms=10):
        pass

    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.COVERED and state.since == 1010.0
    assert state.district == "Wan Chai" and state.held
    events = await world.store.events_between(keys.camera_events(world.camera.id), 0, 2000)
    assert [(e.from_state, e.to_state) for e in events] == [
        (State.UNMONITORED, State.OK),
        (State.OK, State.COVERED),
    ]
    covered = events[-1]
    assert covered.measures == {"texture.detail": 0.01}
    assert covered.snapshot == snap.sha256 and covered.last_good == good.sha256
    stored = await world.store.snapshot(snap.sha256)
    assert stored is not None and stored.jpeg == snap.data
    assert stored.camera_id == world.camera.id and stored.restaurant_id == world.restaurant.id
    assert await world.redis.zscore(keys.EVENTS, covered.id) == 1010.0
    assert await world.redis.zscore(keys.restaurant_events(world.restaurant.id), covered.id)


async def test_an_entry_applied_twice_counts_once(world: Any) -> None:
    checker = Checker(world.store, world.registry, "checker-a")
    await held(world)
    news = monitor_news(world.camera.id, 1010.0, "ok", "dark")
    eid = await world.store.publish(news, (), world.restaurant.id)
    fields = news.fields()
    first_id, first_fields = (await world.redis.xrange(keys.TRANSITIONS))[0]
    await checker.apply_entry(first_id, first_fields)
    first = await checker.apply_entry(eid, fields)
    again = await checker.apply_entry(eid, fields)
    assert first is not None and first.to_state is State.DARK
    assert again is None
    assert await world.redis.zcard(keys.camera_events(world.camera.id)) == 2  # held + dark


async def test_checker_killed_between_read_and_ack_loses_and_doubles_nothing(world: Any) -> None:
    dead = Checker(world.store, world.registry, "checker-a")
    await dead.ensure_groups()
    await held(world)
    await world.store.publish(
        monitor_news(world.camera.id, 1010.0, "ok", "frozen"), (), world.restaurant.id
    )
    # Read the entries as checker-a would, apply the first, then "die" before any XACK.
    got: Any = await world.redis.xreadgroup(
        keys.CHECKER_GROUP, "checker-a", {keys.TRANSITIONS: ">"}, count=10
    )
    entries = got[0][1]
    assert len(entries) == 2
    await dead.apply_entry(*entries[0])
    pending = await world.redis.xpending(keys.TRANSITIONS, keys.CHECKER_GROUP)
    assert pending["pending"] == 2

    # The same checker restarts: its own pending entries are applied first, exactly once.
    restarted = Checker(world.store, world.registry, "checker-a")
    await restarted.drain_own_pending()
    assert (await world.redis.xpending(keys.TRANSITIONS, keys.CHECKER_GROUP))["pending"] == 0
    events = await world.store.events_between(keys.camera_events(world.camera.id), 0, 2000)
    assert [e.to_state for e in events] == [State.OK, State.FROZEN]


async def test_another_checker_takes_over_a_dead_ones_entries(world: Any) -> None:
    await Checker(world.store, world.registry, "checker-a").ensure_groups()
    await held(world)
    await world.redis.xreadgroup(keys.CHECKER_GROUP, "checker-a", {keys.TRANSITIONS: ">"})
    other = Checker(world.store, world.registry, "checker-b", claim_idle_ms=0)
    assert await other.claim_abandoned() == 1
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.OK
    assert (await world.redis.xpending(keys.TRANSITIONS, keys.CHECKER_GROUP))["pending"] == 0


async def test_relay_gone_makes_the_camera_unmonitored_not_offline(world: Any) -> None:
    checker = Checker(world.store, world.registry, "checker-a")
    await checker.ensure_groups()
    await held(world)
    await checker.read_once(block_ms=10)
    assert await checker.sweep() == 0  # the hold is fresh

    # The relay dies: its hold key expires (Redis's clock) and its score is in the past.
    await world.redis.delete(keys.camera_relay(world.camera.id))
    await world.redis.zadd(keys.HELD, {world.camera.id: 1.0})
    assert await checker.sweep() == 1
    while await checker.read_once(block_ms=10):
        pass
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.UNMONITORED
    assert state.cause == "lease_lost" and not state.held
    events = await world.store.events_between(keys.camera_events(world.camera.id), 0, 1e12)
    assert events[-1].to_state is State.UNMONITORED
    assert State.OFFLINE not in {e.to_state for e in events}

    # Another relay takes over and its monitor continues (still ok): back to ok.
    await held(world, t=2000.0)
    await checker.read_once(block_ms=10)
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.OK


async def test_a_flagged_camera_stays_flagged_when_a_relay_takes_over(world: Any) -> None:
    checker = Checker(world.store, world.registry, "checker-a")
    await checker.ensure_groups()
    await world.store.refresh_held([world.camera.id], "relay-2")
    news = News(kind=Kind.HELD, camera=world.camera.id, t=5.0, to_state="covered", relay="r2")
    await world.store.publish(news, (), world.restaurant.id)
    await checker.read_once(block_ms=10)
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.COVERED and state.cause == "covered"


async def test_disabled_and_enabled_follow_the_registry(world: Any) -> None:
    checker = Checker(world.store, world.registry, "checker-a")
    await checker.ensure_groups()
    await held(world)
    while await checker.read_once(block_ms=10):
        pass
    await world.registry.update_camera(world.camera.id, CameraUpdate(enabled=False))
    while await checker.read_once(block_ms=10):
        pass
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.DISABLED and not state.enabled
    # Monitor news while disabled change nothing that is shown.
    await world.store.publish(
        monitor_news(world.camera.id, 1020.0, "ok", "dark"), (), world.restaurant.id
    )
    while await checker.read_once(block_ms=10):
        pass
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.DISABLED
    await world.registry.update_camera(world.camera.id, CameraUpdate(enabled=True))
    while await checker.read_once(block_ms=10):
        pass
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.DARK  # what the relay last said


async def test_reconcile_registers_cameras_no_checker_has_seen(world: Any) -> None:
    checker = Checker(world.store, world.registry, "checker-a")
    await checker.ensure_groups()
    await world.redis.delete(keys.TRANSITIONS)
    await checker.ensure_groups()
    await checker.reconcile()
    while await checker.read_once(block_ms=10):
        pass
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.UNMONITORED
    assert state.since == world.camera.created_at


async def test_deleted_camera_leaves_its_history(world: Any) -> None:
    checker = Checker(world.store, world.registry, "checker-a")
    await checker.ensure_groups()
    await held(world)
    while await checker.read_once(block_ms=10):
        pass
    await world.registry.delete_camera(world.camera.id)
    while await checker.read_once(block_ms=10):
        pass
    assert await world.store.state(world.camera.id) is None
    assert await world.redis.zcard(keys.camera_events(world.camera.id)) == 1


async def test_events_queue_webhook_deliveries_when_a_webhook_is_set(world: Any) -> None:
    checker = Checker(world.store, world.registry, "checker-a")
    await checker.ensure_groups()
    await world.redis.set(keys.webhook(world.restaurant.id), json.dumps({"url": "x"}))
    await held(world)
    while await checker.read_once(block_ms=10):
        pass
    queued = await world.redis.zrange(keys.WEBHOOK_QUEUE, 0, -1)
    assert len(queued) == 1
    delivery = json.loads(await world.redis.get(keys.webhook_delivery(queued[0])))
    assert delivery["restaurant"] == world.restaurant.id and delivery["attempts"] == 0


async def test_a_new_camera_shows_ok_only_when_its_monitor_says_so(world: Any) -> None:
    """A relay taking up a new camera says ``unmonitored`` (awaiting evidence): the published
    state stays ``unmonitored``, only its cause changes (announced, no event); ``ok`` comes
    with the monitor's first checked picture."""
    checker = Checker(world.store, world.registry, "checker-a")
    await checker.ensure_groups()
    await checker.reconcile()  # the registration, as the checker finds it
    while await checker.read_once(block_ms=10):
        pass
    await world.store.refresh_held([world.camera.id], "relay-1")
    news = News(
        kind=Kind.HELD,
        camera=world.camera.id,
        t=1000.0,
        to_state="unmonitored",
        cause="awaiting_evidence",
        detail="relay relay-1 checks the camera's picture",
        relay="relay-1",
    )
    await world.store.publish(news, (), world.restaurant.id)
    while await checker.read_once(block_ms=10):
        pass
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.UNMONITORED and state.held
    assert state.cause == "awaiting_evidence" and state.since != 1000.0
    events = await world.store.events_between(keys.camera_events(world.camera.id), 0, 1e12)
    assert events == []
    board: Any = await world.redis.xrange(keys.BOARD)
    assert board[-1][1]["cause"] == "awaiting_evidence"

    checked = monitor_news(world.camera.id, 1002.0, "unmonitored", "ok", cause="checked")
    await world.store.publish(checked, (), world.restaurant.id)
    while await checker.read_once(block_ms=10):
        pass
    state = await world.store.state(world.camera.id)
    assert state is not None and state.state is State.OK and state.since == 1002.0
    assert state.cause == "checked"
    events = await world.store.events_between(keys.camera_events(world.camera.id), 0, 1e12)
    assert [(e.from_state, e.to_state, e.cause) for e in events] == [
        (State.UNMONITORED, State.OK, "checked")
    ]
