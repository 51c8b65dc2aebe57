"""The relay-side sampler with real media and real Redis: keyframes of a labelled clip go in
as the relay hands them over, compliance news with JPEG evidence comes out; connection news
raises offline; a busy camera skips keyframes instead of queueing them."""

from __future__ import annotations

import threading
from typing import Any

from kitchencam import keys
from kitchencam.compliance.records import Kind, News
from kitchencam.compliance.sampler import (
    Observers,
    connection_evidence,
)
from kitchencam.compliance.states import ConnectionProblem, Problem, State
from kitchencam.relay.media import IngestState, IngestStatus, Reason
from tests.compliance.support import LABELS, access_units, eventually, news


class Clock:
    """Media time standing in for the wall clock."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def feed(observers: Observers, sampler: Any, name: str, clock: Clock, start: float) -> None:
    """Hand a clip's access units to the sampler at media pace (instantly), letting each
    sampled keyframe be analysed before the next (as at real speed)."""
    units, info = access_units(name)
    for unit in units:
        clock.t = start + unit.t
        sampler.on_access_unit(unit.au, info)
        if unit.au.keyframe:
            await eventually(lambda: not sampler._busy, "analysis of a keyframe")


async def test_covered_clip_raises_covered_with_evidence(world: Any) -> None:
    clock = Clock(1000.0)
    observers = Observers(world.store, "relay-1", interval_s=2.0, threads=1, clock=clock)
    sampler = observers.make_observer(world.camera)
    await eventually(lambda: sampler._analysis is not None, "monitor loaded")
    await feed(observers, sampler, "covered", clock, 1000.0)

    async def covered() -> dict[str, Any] | None:
        for entry in await news(world.redis):
            if entry["kind"] == "monitor" and entry["to"] == "covered":
                return entry
        return None

    entry = await eventually(covered, "covered news")
    onset = 1000.0 + LABELS["covered"]["onset_s"]
    assert onset < float(entry["t"]) <= onset + 10.0  # the target
    parsed = News.parse(entry)
    assert parsed.measures["texture.detail"] >= 0 and parsed.relay == "relay-1"
    snap = await world.store.snapshot(parsed.snapshot)
    good = await world.store.snapshot(parsed.last_good)
    assert snap is not None and snap.jpeg.startswith(b"\xff\xd8") and snap.t == parsed.t
    assert good is not None and good.sha256 != snap.sha256 and good.jpeg.startswith(b"\xff\xd8")
    kinds = [e["kind"] for e in await news(world.redis)]
    assert kinds[0] == Kind.HELD.value
    # The reference view was approved automatically once the picture was good.
    reference = await world.store.reference(world.camera.id)
    assert reference is not None and reference.approved_by == "auto"
    assert reference.approved_at < onset
    # Held, previewed, and the monitor saved for the next relay.
    assert await world.redis.get(keys.camera_relay(world.camera.id)) == "relay-1"
    assert await world.store.preview(world.camera.id) is not None
    memory, baseline = await world.store.load_monitor(world.camera.id)
    assert memory is not None and baseline is not None and baseline.ready
    sampler.close()
    await observers.aclose()
    memory, _ = await world.store.load_monitor(world.camera.id)
    assert memory is not None and memory.state is State.COVERED


async def test_a_new_camera_is_held_unmonitored_until_a_picture_is_checked(world: Any) -> None:
    clock = Clock(1000.0)
    observers = Observers(world.store, "relay-1", threads=1, clock=clock)
    sampler = observers.make_observer(world.camera)
    await eventually(lambda: sampler._analysis is not None, "monitor loaded")

    async def first(kind: str) -> dict[str, Any] | None:
        found = [e for e in await news(world.redis) if e["kind"] == kind]
        return found[0] if found else None

    held: dict[str, Any] = await eventually(lambda: first("held"), "held news")
    assert (held["to"], held["cause"]) == ("unmonitored", "awaiting_evidence")
    assert await first("monitor") is None  # holding a camera proves nothing about it
    units, info = access_units("good", keyframes_only=True)
    clock.t = 1002.0
    sampler.on_access_unit(units[0].au, info)
    checked: dict[str, Any] = await eventually(
        lambda: first("monitor"), "the first checked picture"
    )
    assert (checked["from"], checked["to"], checked["cause"]) == ("unmonitored", "ok", "checked")
    assert float(checked["t"]) == 1002.0 and sampler.samples == 1
    snap = await world.store.snapshot(checked["snapshot"])
    assert snap is not None and snap.jpeg.startswith(b"\xff\xd8")
    await observers.aclose()


async def test_a_relay_taking_over_soon_keeps_ok_without_news_of_a_change(world: Any) -> None:
    clock = Clock(1000.0)
    first = Observers(world.store, "relay-1", threads=1, clock=clock)
    sampler = first.make_observer(world.camera)
    await eventually(lambda: sampler._analysis is not None, "monitor loaded")
    units, info = access_units("good", keyframes_only=True)
    sampler.on_access_unit(units[0].au, info)
    await eventually(lambda: sampler.samples == 1 and not sampler._busy, "one analysis")
    await first.aclose()
    clock.t = 1002.0  # a hand-over: the next relay starts 2 s later
    second = Observers(world.store, "relay-2", threads=1, clock=clock)
    again = second.make_observer(world.camera)

    async def held_by_second() -> dict[str, Any] | None:
        found = [e for e in await news(world.redis) if e.get("relay") == "relay-2"]
        return found[0] if found else None

    held: dict[str, Any] = await eventually(held_by_second, "held news from the second relay")
    assert (held["kind"], held["to"], held["cause"]) == ("held", "ok", "lease_held")
    assert [e["kind"] for e in await news(world.redis)] == ["held", "monitor", "held"]
    assert again._analysis is not None and again._analysis.state is State.OK
    await second.aclose()


async def test_monitor_continues_where_the_last_relay_was(world: Any) -> None:
    clock = Clock(1000.0)
    first = Observers(world.store, "relay-1", threads=1, clock=clock)
    sampler = first.make_observer(world.camera)
    await eventually(lambda: sampler._analysis is not None, "monitor loaded")
    await feed(first, sampler, "dark", clock, 1000.0)
    await first.aclose()
    second = Observers(world.store, "relay-2", threads=1, clock=clock)
    again = second.make_observer(world.camera)
    await eventually(lambda: again._analysis is not None, "monitor loaded")
    assert again._analysis is not None and again._analysis.state is State.DARK
    assert again._analysis.monitor.baseline.ready and again._analysis.has_reference

    async def held_dark() -> bool:
        entries = [e for e in await news(world.redis) if e["kind"] == "held"]
        return len(entries) == 2 and entries[-1]["to"] == "dark"

    await eventually(held_dark, "held news saying dark")
    await second.aclose()


async def test_stalled_stream_raises_offline_from_the_last_packet(world: Any) -> None:
    clock = Clock(1000.0)
    observers = Observers(world.store, "relay-1", threads=1, clock=clock)
    sampler = observers.make_observer(world.camera)
    await eventually(lambda: sampler._analysis is not None, "monitor loaded")
    sampler.on_status(
        IngestStatus(IngestState.STALLED, 1005.0, Reason.STALLED, "", last_packet=1000.0)
    )
    clock.t = 1007.0  # ticks (every second, real time) carry the camera past 6 s

    async def offline() -> dict[str, Any] | None:
        found = [e for e in await news(world.redis) if e.get("to") == "offline"]
        return found[0] if found else None

    entry = await eventually(offline, "offline news", timeout_s=5.0)
    assert entry["cause"] == "offline" and "stalled" in entry["detail"]
    await observers.aclose()


async def test_a_busy_camera_skips_keyframes_instead_of_queueing_them(world: Any) -> None:
    clock = Clock(1000.0)
    observers = Observers(world.store, "relay-1", threads=1, clock=clock)
    sampler = observers.make_observer(world.camera)
    await eventually(lambda: sampler._analysis is not None, "monitor loaded")
    release = threading.Event()
    observers.pool.submit(release.wait, 10.0)  # the only analysis thread is busy
    units, info = access_units("good", keyframes_only=True)
    for unit in units[:6]:
        clock.t = 1000.0 + unit.t
        sampler.on_access_unit(unit.au, info)
    assert sampler.skipped == 5  # one keyframe waits; the others were never queued
    release.set()
    await eventually(lambda: sampler.samples == 1 and not sampler._busy, "one analysis")
    await observers.aclose()


def test_connection_news_maps_to_evidence() -> None:
    # "live" alone proves nothing (a hung camera still answers RTSP); packets do.
    assert connection_evidence(IngestStatus(IngestState.LIVE, 5.0)) is None
    refused = connection_evidence(
        IngestStatus(
            IngestState.RETRYING,
            9.0,
            Reason.UNAUTHORIZED,
            "rtsp://admin:hunter2@cam/x said 401",
            last_packet=3.0,
        )
    )
    assert isinstance(refused, ConnectionProblem)
    assert refused.problem is Problem.CANNOT_CONNECT and refused.since == 3.0
    assert "hunter2" not in refused.reason and "credentials rejected" in refused.reason
    ended = connection_evidence(IngestStatus(IngestState.RETRYING, 9.0, Reason.STREAM_ENDED))
    assert isinstance(ended, ConnectionProblem) and ended.problem is Problem.NO_MEDIA
    assert connection_evidence(IngestStatus(IngestState.CONNECTING, 1.0)) is None


async def test_closed_sampler_ignores_late_media(world: Any) -> None:
    observers = Observers(world.store, "relay-1", threads=1)
    sampler = observers.make_observer(world.camera)
    sampler.close()
    units, info = access_units("good", keyframes_only=True)
    sampler.on_access_unit(units[0].au, info)
    await observers.aclose()
    assert sampler.samples == 0 and observers.sampler(world.camera.id) is None
