"""Faults with real processes: two relays, one web, one checker, a persistent Redis and six real
RTSP cameras. A relay is killed, Redis restarted and the web killed while viewers watch.

The tests share one deployment (starting it costs most of the time) and each leaves it whole
again: every process running and every camera pulled. Each camera counts its RTSP sessions;
``max_sessions_seen`` above one would mean two relays pulled a camera at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from kitchencam import keys
from kitchencam.relay.webrtc import configure_host_addresses
from tests.support.whep_client import WhepViewer
from tests.system.cluster import Cluster

log = logging.getLogger(__name__)

CAMERAS = 6
RELAYS = ("relay-a", "relay-b")
TAKEOVER_DEADLINE_S = 15.0
"""The issue's promise: a dead relay's cameras are pulled by another within 15 s."""
SPLIT_DEADLINE_S = 30.0
VIEWER_DEADLINE_S = 20.0
FRAMES = 5
POLL_S = 0.05
REGULATOR_PASSWORD = "inspector-password-1"
OUTAGE_S = 3.0
"""How long Redis stays down (shorter than the lease TTL, like a restart)."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The deployment, with its cameras registered and split between the two relays."""
    configure_host_addresses(["127.0.0.1"])  # the test's viewers gather loopback candidates
    c = Cluster(Path(tmp_path_factory.mktemp("cluster")))
    try:
        c.start_redis()
        c.start_web()
        c.start_checker()
        for name in RELAYS:
            c.start_relay(name)
        c.wait_healthy()
        c.register(CAMERAS)
        _wait_sync(lambda: _split(c), SPLIT_DEADLINE_S, "every camera pulled, by both relays")
        yield c
    finally:
        c.stop()


def _split(c: Cluster) -> bool:
    holders = c.holders()
    return (
        all(holders.values())
        and set(holders.values()) == set(c.relays)
        and all(cam.open_sessions == 1 for cam in c.cameras.values())
    )


def _wait_sync(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline_s}s")
        time.sleep(POLL_S)


async def _wait(condition: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Wait for ``condition`` on the loop; return how long it took."""
    started = time.monotonic()
    while not await asyncio.to_thread(condition):
        if time.monotonic() - started > deadline_s:
            raise AssertionError(f"{what}: not within {deadline_s}s")
        await asyncio.sleep(POLL_S)
    return time.monotonic() - started


async def _viewer(
    session: aiohttp.ClientSession, base: str, cid: str, deadline_s: float = VIEWER_DEADLINE_S
) -> WhepViewer:
    """A viewer through ``base`` that decodes frames, retrying as a player would while the
    camera has no relay (503) or the web process is away."""
    end = time.monotonic() + deadline_s
    while True:
        viewer = WhepViewer(base, cid)
        try:
            await viewer.connect(session)
            await viewer.wait_frames(FRAMES, max(end - time.monotonic(), 1.0))
            return viewer
        except (AssertionError, aiohttp.ClientError, TimeoutError) as err:
            await viewer.close()
            if time.monotonic() > end:
                raise AssertionError(f"no viewer of camera {cid} within {deadline_s}s") from err
            await asyncio.sleep(0.2)


def _no_double_pulls(c: Cluster) -> None:
    pulled_twice = {cid: cam.max_sessions_seen for cid, cam in c.cameras.items()}
    assert all(n <= 1 for n in pulled_twice.values()), f"sessions per camera: {pulled_twice}"


async def _restore(c: Cluster) -> None:
    """Bring back both relays and wait until every camera is pulled again, by both."""
    for name in RELAYS:
        if c.relays[name].proc.poll() is not None:
            c.start_relay(name)
    await asyncio.to_thread(c.wait_healthy)
    await _wait(lambda: _split(c), SPLIT_DEADLINE_S, "cameras split again")


async def test_cameras_are_split_and_a_viewer_reaches_the_holder(cluster: Cluster) -> None:
    holders = cluster.holders()
    counts = {name: sum(1 for h in holders.values() if h == name) for name in RELAYS}
    log.info("split of %s cameras: %s", CAMERAS, counts)
    assert all(counts.values()), counts
    async with aiohttp.ClientSession() as session:
        for name in RELAYS:
            cid = next(c for c, h in holders.items() if h == name)
            assert cluster.web is not None
            viewer = await _viewer(session, cluster.web.base, cid)
            try:
                # The session lives at the holder: it counts the viewer, the other relay does
                # not even pull the camera.
                assert (await asyncio.to_thread(cluster.relay_viewers, name)).get(cid) == 1
                other = next(r for r in RELAYS if r != name)
                assert cid not in await asyncio.to_thread(cluster.relay_viewers, other)
            finally:
                await viewer.close(session)
    _no_double_pulls(cluster)


async def test_a_killed_relay_loses_its_cameras_to_the_other_within_15_s(
    cluster: Cluster,
) -> None:
    assert cluster.web is not None
    victim, survivor = RELAYS
    lost = [cid for cid, h in cluster.holders().items() if h == victim]
    opened = {cid: cluster.cameras[cid].sessions_opened for cid in lost}
    watched = lost[0]
    async with aiohttp.ClientSession() as session:
        viewer = await _viewer(session, cluster.web.base, watched)

        def taken_over() -> bool:
            holders = cluster.holders()
            return all(
                holders[cid] == survivor
                and cluster.cameras[cid].open_sessions == 1
                and cluster.cameras[cid].sessions_opened > opened[cid]
                for cid in lost
            )

        killed = time.monotonic()
        cluster.relays[victim].kill()
        takeover = asyncio.create_task(_wait(taken_over, TAKEOVER_DEADLINE_S, "takeover"))
        try:
            again = await _viewer(session, cluster.web.base, watched)
            viewer_s = time.monotonic() - killed
            takeover_s = await takeover
        finally:
            takeover.cancel()
            with contextlib.suppress(asyncio.CancelledError, AssertionError):
                await takeover
        log.warning(
            "relay killed: %s cameras pulled by %s after %.1f s; viewer frames again after %.1f s",
            len(lost),
            survivor,
            takeover_s,
            viewer_s,
        )
        assert takeover_s <= TAKEOVER_DEADLINE_S
        assert viewer_s <= TAKEOVER_DEADLINE_S + 2.0  # + WHEP, ICE and the first GOP
        await again.close(session)
        await viewer.close()
    _no_double_pulls(cluster)
    await _restore(cluster)
    _no_double_pulls(cluster)


async def test_viewers_keep_watching_through_a_redis_restart(cluster: Cluster) -> None:
    assert cluster.web is not None
    holders = cluster.holders()
    watched = [next(c for c, h in holders.items() if h == name) for name in RELAYS]
    client = cluster.client()
    events_before = set(client.zrange(keys.EVENTS, 0, -1))
    client.close()
    log.warning("%s compliance events before the Redis restart", len(events_before))
    async with aiohttp.ClientSession() as session:
        viewers = [await _viewer(session, cluster.web.base, cid) for cid in watched]
        # Acknowledged just before Redis stops: must be there when it is back.
        late = await asyncio.to_thread(
            cluster.api,
            "PATCH",
            f"/api/v1/restaurants/{cluster.restaurant_id}",
            {"name": "Renamed Before The Outage"},
        )
        assert late["name"] == "Renamed Before The Outage"
        await asyncio.to_thread(cluster.stop_redis)
        down = time.monotonic()
        status, headers = await asyncio.to_thread(cluster.status, "/api/v1/states")
        assert status == 503 and headers.get("Retry-After"), (status, headers)
        while time.monotonic() - down < OUTAGE_S:
            for viewer in viewers:
                await viewer.wait_frames(2)  # media does not need Redis
        assert all(p.proc.poll() is None for p in cluster.processes())
        await asyncio.to_thread(cluster.start_redis)
        recovered = await _wait(_reconnected(cluster), 30.0, "every process writing again")
        log.warning("Redis back: every process wrote its heartbeat %.1f s later", recovered)
        restaurant = await asyncio.to_thread(
            cluster.api, "GET", f"/api/v1/restaurants/{cluster.restaurant_id}"
        )
        assert restaurant["name"] == "Renamed Before The Outage"
        for viewer in viewers:
            await viewer.wait_frames(FRAMES)
        cameras = await asyncio.to_thread(
            cluster.api, "GET", f"/api/v1/restaurants/{cluster.restaurant_id}/cameras"
        )
        assert {c["id"] for c in cameras["cameras"]} == set(cluster.cameras)
        client = cluster.client()
        assert events_before <= set(client.zrange(keys.EVENTS, 0, -1))
        client.close()
        for viewer in viewers:
            await viewer.close(session)
    await _wait(lambda: _split(cluster), SPLIT_DEADLINE_S, "cameras pulled after the restart")
    _no_double_pulls(cluster)


async def test_the_web_process_recovers_from_kill_9(cluster: Cluster) -> None:
    assert cluster.web is not None
    await asyncio.to_thread(cluster.add_regulator, "inspector", REGULATOR_PASSWORD)
    cid = next(iter(cluster.cameras))
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        await _sign_in(session, cluster.web.base, "inspector", REGULATOR_PASSWORD)
        await _board_stream_opens(session, cluster.web.base)
        watching = await _viewer(session, cluster.web.base, cid)
        cluster.web.kill()
        await watching.wait_frames(FRAMES)  # media flows from the relay, not through web
        await asyncio.to_thread(cluster.start_web)
        await asyncio.to_thread(cluster.web.wait_healthy)
        states = await asyncio.to_thread(cluster.api, "GET", "/api/v1/states")
        assert {s["camera_id"] for s in states["states"]} >= set(cluster.cameras)
        await _board_stream_opens(session, cluster.web.base)  # same session: it is in Redis
        viewer = await _viewer(session, cluster.web.base, cid)
        await watching.wait_frames(FRAMES)
        await viewer.close(session)
        await watching.close(session)
    _no_double_pulls(cluster)


async def _sign_in(session: aiohttp.ClientSession, base: str, name: str, password: str) -> None:
    async with session.get(base + "/signin") as resp:
        page = await resp.text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the sign-in form"
    form = {"csrf_token": match.group(1), "identity": name, "password": password, "next": ""}
    async with session.post(base + "/signin", data=form, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()


async def _board_stream_opens(session: aiohttp.ClientSession, base: str) -> None:
    """The board's live stream answers and sends its first line."""
    async with session.get(base + "/board/stream", allow_redirects=False) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await asyncio.wait_for(resp.content.readline(), 5)
        assert first.startswith(b"retry:")


def _reconnected(c: Cluster) -> Callable[[], bool]:
    """Whether every process answers ``/healthz`` with 200 and has written its heartbeat to
    the restarted Redis (the heartbeats it had before are deleted first)."""
    client = c.client()
    try:
        stale = list(client.scan_iter("kc:role:*"))
        if stale:
            client.delete(*stale)
    finally:
        client.close()

    def check() -> bool:
        client = c.client()
        try:
            written = {key.rsplit(":", 1)[1] for key in client.scan_iter("kc:role:*")}
        finally:
            client.close()
        if not {"web", "checker", *RELAYS} <= written:
            return False
        try:
            for process in c.processes():
                process.wait_healthy(0.5)
        except AssertionError:
            return False
        return True

    return check
