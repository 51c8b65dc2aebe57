"""Issue 4, with real processes: a checker killed between reading and acknowledging news loses
nothing and doubles nothing once a checker runs again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from kitchencam import keys
from kitchencam.addresses import AddressPolicy
from kitchencam.compliance.checker import CLAIM_IDLE_MS
from kitchencam.compliance.frames import JpegSnapshot
from kitchencam.compliance.records import Kind, News
from kitchencam.compliance.states import State
from kitchencam.compliance.store import ComplianceStore
from kitchencam.models import CameraCreate, RestaurantCreate
from kitchencam.registry import Registry
from kitchencam.secretbox import SecretBox, generate_key
from tests.compliance.support import eventually
from tests.helpers import camera_body, restaurant_body
from tests.support.serve import STOP_DEADLINE_S, KitchencamProcess, cli_env

ROOT = Path(__file__).resolve().parents[2]
CRASHING_CHECKER = ROOT / "tests" / "support" / "crashing_checker.py"
DEAD = "checker-dead"


async def publish_like_a_relay(store: ComplianceStore, cid: str, rid: str) -> list[str]:
    """What a relay's sampler writes for a camera it takes over and sees covered, uncovered,
    then dark (``KeyframeSampler._write_one``); return the entry ids."""
    t0 = time.time() - 60
    await store.refresh_held([cid], "relay-1")
    ids = [
        await store.publish(
            News(
                kind=Kind.HELD,
                camera=cid,
                t=t0,
                to_state="ok",
                cause="lease_held",
                detail="relay relay-1 analyses the camera",
                relay="relay-1",
            ),
            (),
            rid,
        )
    ]
    snap = JpegSnapshot.of(b"\xff\xd8 covered lens \xff\xd9")
    good = JpegSnapshot.of(b"\xff\xd8 last good frame \xff\xd9")
    for i, (old, new, snaps) in enumerate(
        [("ok", "covered", [snap, good]), ("covered", "ok", [good]), ("ok", "dark", [])], 1
    ):
        news = News(
            kind=Kind.MONITOR,
            camera=cid,
            t=t0 + 10 * i,
            from_state=old,
            to_state=new,
            cause=new,
            detail=f"{new} for 4 s",
            measures={"luminance.mean": 0.1 * i},
            snapshot=snaps[0].sha256 if snaps else "",
            last_good=good.sha256 if snaps else "",
            relay="relay-1",
        )
        ids.append(await store.publish(news, snaps, rid))
    return ids


def lines(path: Path, word: str) -> list[str]:
    """The arguments of every ``WORD ...`` line the crashing checker printed."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(word + " ")]


def start_crashing_checker(redis_url: str, out_path: Path) -> subprocess.Popen[bytes]:
    """The real checker with failure injection (``tests/support/crashing_checker.py``)."""
    with open(out_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-W", "error", str(CRASHING_CHECKER), redis_url, DEAD],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


async def test_checker_killed_between_read_and_ack_loses_and_doubles_nothing(
    redis_url: str, resolver: Any, tmp_path: Path
) -> None:
    key = generate_key()
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    registry = Registry(redis, SecretBox(key), AddressPolicy(resolver=resolver))
    store = ComplianceStore(redis)
    restaurant, _ = await registry.create_restaurant(
        RestaurantCreate.model_validate(restaurant_body())
    )
    camera = await registry.create_camera(restaurant.id, CameraCreate.model_validate(camera_body()))
    entry_ids = await publish_like_a_relay(store, camera.id, restaurant.id)

    dead_out = tmp_path / "crashing-checker.log"
    dead = start_crashing_checker(redis_url, dead_out)
    checker: KitchencamProcess | None = None
    try:
        # The dead checker read every entry, applied the first, and hangs in its XACK.
        hung = await eventually(
            lambda: lines(dead_out, "HANG") or (dead.poll() is not None and ["exited"]),
            "crashing checker hanging in XACK",
        )
        assert hung == [entry_ids[0]], dead_out.read_text()
        assert set(entry_ids) <= set(lines(dead_out, "READ"))
        dead.send_signal(signal.SIGKILL)
        assert dead.wait(STOP_DEADLINE_S) == -signal.SIGKILL

        pending: Any = await redis.xpending(keys.TRANSITIONS, keys.CHECKER_GROUP)
        assert {c["name"] for c in pending["consumers"]} == {DEAD}
        assert pending["pending"] >= len(entry_ids)
        events = await store.events_between(keys.camera_events(camera.id), 0, 1e12)
        assert [e.id for e in events] == entry_ids[:1]  # applied, never acknowledged

        # The dead checker's entries only become claimable after CLAIM_IDLE_MS of silence
        # (30 s). Instead of sleeping that long, age them: XCLAIM to the same dead consumer
        # with IDLE (JUSTID: no delivery counted), as if it had been dead for that long.
        for stream in (keys.TRANSITIONS, keys.CHANGES):
            rows: Any = await redis.xpending_range(stream, keys.CHECKER_GROUP, "-", "+", 1000)
            if rows:
                await redis.xclaim(
                    stream,
                    keys.CHECKER_GROUP,
                    DEAD,
                    0,
                    [r["message_id"] for r in rows],
                    idle=CLAIM_IDLE_MS + 1000,
                    justid=True,
                )

        # A checker starts again (another instance name: the dead one's entries are taken
        # over with XAUTOCLAIM, not drained as its own).
        env = cli_env(
            tmp_path / "data",
            redis_url=redis_url,
            secret_key=key,
            instance="checker-restarted",
        )
        checker = KitchencamProcess(["checker"], env, tmp_path / "checker.log")
        health = await asyncio.to_thread(checker.wait_healthy)
        assert list(health["roles"]) == ["checker"]  # type: ignore[call-overload]

        async def settled() -> bool:
            left = 0
            for stream in (keys.TRANSITIONS, keys.CHANGES):
                left += (await redis.xpending(stream, keys.CHECKER_GROUP))["pending"]
            return left == 0

        await eventually(settled, "dead checker's entries taken over and acknowledged")

        events = await store.events_between(keys.camera_events(camera.id), 0, 1e12)
        assert [e.id for e in events] == entry_ids  # one event per transition, none twice
        assert [(e.from_state, e.to_state) for e in events] == [
            (State.UNMONITORED, State.OK),
            (State.OK, State.COVERED),
            (State.COVERED, State.OK),
            (State.OK, State.DARK),
        ]
        assert await redis.zcard(keys.EVENTS) == len(entry_ids)
        assert await redis.zcard(keys.restaurant_events(restaurant.id)) == len(entry_ids)
        covered = events[1]
        assert covered.snapshot is not None and await store.snapshot(covered.snapshot)

        state = await store.state(camera.id)
        assert state is not None
        assert state.state is State.DARK and state.since == events[-1].t
        assert state.last_event == entry_ids[-1] and state.held

        for stream in (keys.TRANSITIONS, keys.CHANGES):
            assert (await redis.xpending(stream, keys.CHECKER_GROUP))["pending"] == 0
        consumers: Any = await redis.xinfo_consumers(keys.TRANSITIONS, keys.CHECKER_GROUP)
        assert {c["name"]: c["pending"] for c in consumers} == {
            DEAD: 0,
            "checker-restarted": 0,
        }
        assert checker.stop() == 0, checker.output
    finally:
        if dead.poll() is None:
            dead.kill()
            dead.wait(STOP_DEADLINE_S)
        if checker is not None and checker.proc.poll() is None:
            checker.kill()
        await redis.aclose()
