"""Relay hubs sharing real cameras through leases: two relay apps split four real RTSP
cameras, the survivor takes over when one stops, and a relay whose lease is overwritten stops
pulling at once, without a camera ever serving two pulls."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis as syncredis
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from kitchencam import appkeys, keys
from kitchencam.relay import share
from kitchencam.relay.hub import RelayHub
from kitchencam.relay.leases import holder, parse_lease
from tests.helpers import bearer, camera_body, register
from tests.relay.conftest import wait_for
from tests.support.camera import RtspCamera

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
TTL_S = 3.0
"""The shortest lease TTL allowed: renewals every second keep these tests quick."""


@pytest.fixture(scope="module")
def cameras() -> Iterator[list[RtspCamera]]:
    """Four small, slow live cameras (cheap on CPU), shared by the module's tests."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(RtspCamera(width=320, height=180, fps=5, gop=5, bitrate_kbps=150))
            for _ in range(4)
        ]


Client = TestClient[Any, Any]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def lease_of(redis: aioredis.Redis, cid: str) -> str | None:
    """The camera's lease value, or None."""
    value = await redis.get(keys.lease(cid))
    return None if value is None else str(value)


async def until(probe: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> None:
    """Poll an async ``probe`` until true, or fail saying ``what`` did not happen."""
    end = time.monotonic() + deadline_s
    while not await probe():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s}s")
        await asyncio.sleep(0.05)


async def relay_app(aiohttp_client: Any, make_app: Any, name: str, roles: tuple[str, ...]) -> Any:
    app = make_app(roles=roles, instance=name, lease_ttl_s=TTL_S, allow_networks=LOOPBACK)
    return await aiohttp_client(app)


async def add_cameras(client: Client, cameras: list[RtspCamera]) -> list[str]:
    rid, token = await register(client)
    ids = []
    for cam in cameras:
        body = camera_body(url=cam.url, password=None, username=None)
        resp = await client.post(
            f"/api/v1/restaurants/{rid}/cameras", json=body, headers=bearer(token)
        )
        assert resp.status == 201, await resp.text()
        ids.append((await resp.json())["id"])
    return ids


def hub(client: Client) -> RelayHub:
    found: RelayHub = client.app[appkeys.RELAY]
    return found


def live(h: RelayHub) -> set[str]:
    """Cameras the hub pulls and has a keyframe of."""
    return {cid for cid in h.camera_ids if (s := h.stream(cid)) is not None and s.gop_units > 0}


def one_pull_each(cameras: list[RtspCamera]) -> None:
    """No camera has ever served two pulls at once (each camera counts its RTSP sessions)."""
    assert all(cam.max_sessions_seen <= 1 for cam in cameras), [
        cam.max_sessions_seen for cam in cameras
    ]


async def test_two_relays_split_the_cameras_and_one_takes_over_when_the_other_stops(
    aiohttp_client: Any, make_app: Any, cameras: list[RtspCamera], redis: aioredis.Redis
) -> None:
    a = await relay_app(aiohttp_client, make_app, "relay-a", ("web", "relay"))
    b = await relay_app(aiohttp_client, make_app, "relay-b", ("relay",))
    ids = await add_cameras(a, cameras)
    await wait_for(
        lambda: len(live(hub(a))) == 2 and len(live(hub(b))) == 2, 20, "a 2/2 split, live"
    )
    assert live(hub(a)) | live(hub(b)) == set(ids)
    for cid in ids:
        found = await holder(redis, cid)
        owner = "relay-a" if cid in hub(a).camera_ids else "relay-b"
        assert found is not None and found.relay_id == owner
        assert found.url == a.app[appkeys.SETTINGS].advertised_relay_url
    assert set(await redis.zrange(keys.RELAYS, 0, -1)) == {"relay-a", "relay-b"}
    health = await (await a.get("/healthz")).json()
    assert "holding 2 leases" in health["roles"]["relay"]["detail"]
    metrics = await (await a.get("/metrics")).text()
    assert "kitchencam_relay_leases_held 2.0" in metrics
    assert "kitchencam_relay_lease_claims_total 2.0" in metrics
    one_pull_each(cameras)

    moved = set(hub(b).camera_ids)
    stopped = time.monotonic()
    await b.close()  # app cleanup: stops its pulls, then releases its leases at once
    assert await redis.zrange(keys.RELAYS, 0, -1) == ["relay-a"]
    for cid in moved:  # released (or already claimed by relay-a)
        assert (await lease_of(redis, cid) or "relay-a -").startswith("relay-a ")
    await wait_for(lambda: set(hub(a).camera_ids) == set(ids), 3, "relay-a claiming them all")
    claimed_s = time.monotonic() - stopped
    await wait_for(lambda: live(hub(a)) == set(ids), 10, "relay-a pulling them all")
    assert claimed_s < 2.5, claimed_s
    one_pull_each(cameras)


async def test_a_relay_whose_lease_is_overwritten_stops_pulling_within_a_renewal(
    aiohttp_client: Any, make_app: Any, cameras: list[RtspCamera], redis: aioredis.Redis
) -> None:
    cam = cameras[0]
    a = await relay_app(aiohttp_client, make_app, "relay-a", ("web", "relay"))
    (cid,) = await add_cameras(a, [cam])
    await wait_for(lambda: live(hub(a)) == {cid}, 20, "the camera live")
    before = hub(a).claims.held[cid].fence
    # Failure injection: another relay's lease, as if relay-a had been cut off meanwhile.
    await redis.set(keys.lease(cid), f"relay-ghost {before + 1}", px=int(TTL_S * 1000))
    overwritten = time.monotonic()
    await wait_for(lambda: hub(a).stream(cid) is None, TTL_S / 3 + 1.0, "the pull stopping")
    assert time.monotonic() - overwritten <= TTL_S / 3 + 1.0
    assert hub(a).claims.lost == 1 and cid not in hub(a).claims.held
    await wait_for(lambda: cam.open_sessions == 0, 5, "the camera's session closing")
    # The ghost never renews: after its TTL relay-a claims the camera again, with a new fence.
    await wait_for(lambda: live(hub(a)) == {cid}, TTL_S + 10, "relay-a pulling it again")
    current = parse_lease(await lease_of(redis, cid))
    assert current is not None and current[0] == "relay-a" and current[1] > before
    one_pull_each(cameras)


async def test_a_refused_write_stops_the_camera_before_the_next_renewal(
    aiohttp_client: Any, make_app: Any, cameras: list[RtspCamera], redis: aioredis.Redis
) -> None:
    cam = cameras[1]
    app = make_app(roles=("web", "relay"), instance="relay-a", allow_networks=LOOPBACK)
    a = await aiohttp_client(app)  # the default TTL: renewals every 2.7 s
    (cid,) = await add_cameras(a, [cam])
    await wait_for(lambda: live(hub(a)) == {cid}, 20, "the camera live")
    await redis.set(keys.lease(cid), "relay-ghost 999", px=60_000)
    refused = time.monotonic()
    await hub(a).publish_figures()  # a fenced write: refused, so the relay checks its lease
    await wait_for(lambda: hub(a).stream(cid) is None, 1.0, "the pull stopping")
    assert time.monotonic() - refused < 1.0
    assert await redis.get(keys.live(cid)) is None  # the refused figures were not written
    one_pull_each(cameras)


async def test_a_new_relay_gets_cameras_handed_over_and_disabled_cameras_are_released(
    aiohttp_client: Any, make_app: Any, cameras: list[RtspCamera], redis: aioredis.Redis
) -> None:
    a = await relay_app(aiohttp_client, make_app, "relay-a", ("web", "relay"))
    rid, token = await register(a)
    ids = []
    for cam in cameras:
        body = camera_body(url=cam.url, password=None, username=None)
        resp = await a.post(f"/api/v1/restaurants/{rid}/cameras", json=body, headers=bearer(token))
        ids.append((await resp.json())["id"])
    await wait_for(lambda: live(hub(a)) == set(ids), 20, "relay-a pulling all four")
    b = await relay_app(aiohttp_client, make_app, "relay-b", ("relay",))
    # Fair share 2: relay-a hands over what it holds beyond 2 + 1, one camera at a time.
    await wait_for(lambda: len(live(hub(b))) == 1, 15, "relay-b pulling a handed-over camera")
    assert len(hub(a).camera_ids) == 3 and hub(a).claims.handed_over == 1
    one_pull_each(cameras)
    # Disabling a camera stops its pull and frees its lease at once.
    (cid,) = hub(b).camera_ids
    resp = await a.patch(f"/api/v1/cameras/{cid}", json={"enabled": False}, headers=bearer(token))
    assert resp.status == 200, await resp.text()

    async def released() -> bool:
        return hub(b).camera_ids == [] and await redis.get(keys.lease(cid)) is None

    await until(released, 3.0, "relay-b dropping the disabled camera and its lease")


async def test_a_vanished_lease_is_claimed_again_without_stopping_the_pull(
    aiohttp_client: Any, make_app: Any, cameras: list[RtspCamera], redis: aioredis.Redis
) -> None:
    cam = cameras[2]
    a = await relay_app(aiohttp_client, make_app, "relay-a", ("web", "relay"))
    (cid,) = await add_cameras(a, [cam])
    await wait_for(lambda: live(hub(a)) == {cid}, 20, "the camera live")
    stream = hub(a).stream(cid)
    before = hub(a).claims.held[cid].fence
    await redis.delete(keys.lease(cid))  # as after a Redis restart that lost the key

    async def reclaimed() -> bool:
        return (await lease_of(redis, cid) or "").startswith("relay-a ")

    await until(reclaimed, TTL_S / 3 + 1.0, "relay-a taking its lease back")
    assert hub(a).claims.held[cid].fence > before and hub(a).claims.lost == 0
    assert hub(a).stream(cid) is stream and stream is not None and stream.reconnects == 0
    assert cam.open_sessions == 1
    one_pull_each(cameras)


def lease_reads(redis_url: str, seconds: float, watching: threading.Event | None = None) -> int:
    """``MGET``s of lease keys (looks for free cameras) Redis runs in ``seconds`` (MONITOR);
    ``watching`` is set once MONITOR sees every command."""
    client = syncredis.Redis.from_url(redis_url, decode_responses=True)
    count = 0
    end = time.monotonic() + seconds
    try:
        with client.monitor() as mon:  # type: ignore[no-untyped-call]
            mon.connection.socket_timeout = 0.5
            if watching is not None:
                watching.set()
            while time.monotonic() < end:
                try:
                    line = mon.next_command()
                except (syncredis.TimeoutError, TimeoutError):
                    continue
                command = str(line.get("command", ""))
                if command.upper().startswith("MGET ") and "kc:lease:" in command:
                    count += 1
    finally:
        client.close()
    return count


async def test_relays_do_not_read_the_leases_while_every_camera_is_held(
    aiohttp_client: Any,
    make_app: Any,
    cameras: list[RtspCamera],
    redis: aioredis.Redis,
    redis_url: str,
) -> None:
    a = await relay_app(aiohttp_client, make_app, "relay-a", ("web", "relay"))
    b = await relay_app(aiohttp_client, make_app, "relay-b", ("relay",))
    ids = await add_cameras(a, cameras[:3])
    hubs = [hub(a), hub(b)]

    def settled() -> bool:
        held = set(hubs[0].claims.held) | set(hubs[1].claims.held)
        return held == set(ids) and all(h.claims.held_total() == 3 for h in hubs)

    await wait_for(settled, 20, "every camera held, and both relays knowing it")
    # Three cameras on two relays: one relay is below its fair share of two for good, and
    # used to read every lease each second looking for a free camera.
    plans = [
        share.plan(len(h.claims.held), 3, h.claims.capacities(), h.claims.policy.capacity)
        for h in hubs
    ]
    assert sum(p.claim for p in plans) > 0, plans
    assert await asyncio.to_thread(lease_reads, redis_url, 4 * TTL_S / 3) == 0
    # A reason to look (here: told to, as after a registry change) makes it look again.
    watching = threading.Event()
    reads = asyncio.create_task(asyncio.to_thread(lease_reads, redis_url, 2.0, watching))
    await wait_for(watching.is_set, 5, "MONITOR watching")
    for h in hubs:
        h.claims.rescan()
        h.claims.wake.set()
    assert await reads >= 1
    one_pull_each(cameras)


async def test_a_stolen_lease_in_the_relays_merged_batch_stops_only_that_camera(
    aiohttp_client: Any, make_app: Any, cameras: list[RtspCamera], redis: aioredis.Redis
) -> None:
    app = make_app(roles=("web", "relay"), instance="relay-a", allow_networks=LOOPBACK)
    a = await aiohttp_client(app)  # the default TTL: renewals every 2.7 s
    stolen, kept = await add_cameras(a, [cameras[0], cameras[3]])
    await wait_for(lambda: live(hub(a)) == {stolen, kept}, 20, "both cameras live")
    await redis.delete(keys.live(kept), keys.camera_relay(kept))
    await redis.set(keys.lease(stolen), "relay-ghost 999", px=60_000)
    refused = time.monotonic()
    await hub(a).publish_figures()  # figures and holds of both cameras: one fenced call
    await wait_for(lambda: hub(a).stream(stolen) is None, 1.0, "the stolen camera stopping")
    assert time.monotonic() - refused < 1.0
    assert await redis.get(keys.live(stolen)) is None
    assert hub(a).stream(kept) is not None and kept in hub(a).claims.held
    assert await redis.get(keys.live(kept)) is not None  # its figures were written
    assert await redis.get(keys.camera_relay(kept)) == "relay-a"  # and its hold, alongside
    one_pull_each(cameras)
