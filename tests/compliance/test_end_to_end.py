"""End to end: a real RTSP camera serving a labelled clip, the real relay analysing it, the
real checker publishing states: ``covered`` raised within its target, ``offline`` within 10 s
of the last packet when the camera hangs, and ``unmonitored`` (never ``offline``) when the
relay goes away."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from aiohttp.test_utils import TestClient

from tests.compliance.support import CLIPS, LABELS, eventually
from tests.helpers import add_camera, bearer, register
from tests.support.camera import RtspCamera

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


async def state_of(web: TestClient, cid: str, token: str) -> dict[str, Any]:
    resp = await web.get(f"/api/v1/cameras/{cid}/state", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_covered_offline_and_unmonitored_end_to_end(
    aiohttp_client: Any, make_app: Any
) -> None:
    web = await aiohttp_client(make_app(roles=("web", "checker"), allow_networks=LOOPBACK))
    with RtspCamera(width=320, height=240, fps=10, gop=20, source=CLIPS / "covered.mp4") as cam:
        started = time.time()
        relay = await aiohttp_client(make_app(roles=("relay",), allow_networks=LOOPBACK))
        rid, token = await register(web)
        cid = (await add_camera(web, rid, token, url=cam.url, username=None, password=None))["id"]

        async def shows(state: str) -> dict[str, Any] | None:
            body = await state_of(web, cid, token)
            return body if body["state"] == state else None

        # Before the clip turns covered (30 s in), with room for a loaded machine.
        await eventually(lambda: shows("ok"), "ok once the relay analyses it", 25.0)
        onset = started + LABELS["covered"]["onset_s"]
        covered = await eventually(lambda: shows("covered"), "covered", 60.0)
        assert onset < covered["since"] <= onset + 10.0 + 1.0  # target, plus the clip's start
        resp = await web.get(f"/api/v1/events?camera={cid}&state=covered", headers=bearer(token))
        event = (await resp.json())["events"][0]
        snap = await web.get(f"/api/v1/snapshots/{event['snapshot']}", headers=bearer(token))
        assert snap.status == 200 and (await snap.read()).startswith(b"\xff\xd8")
        reference = (await state_of(web, cid, token))["reference"]
        assert reference is not None and reference["automatic"]

        cam.stall()  # the camera hangs: the connection stays open, no packets
        stalled = time.time()
        await eventually(lambda: shows("offline"), "offline", 25.0)
        resp = await web.get(f"/api/v1/events?camera={cid}&state=offline", headers=bearer(token))
        event = (await resp.json())["events"][0]
        last_packet = event["measures"]["offline.since"]
        assert last_packet >= stalled - 1.0  # counted from the relay's last packet...
        assert event["t"] - last_packet <= 10.0  # ...and raised within the target
        cam.resume()

        await relay.close()  # our relay goes away: the camera's hold runs out
        gone = time.time()
        lost = await eventually(lambda: shows("unmonitored"), "unmonitored", 25.0)
        assert lost["cause"] == "lease_lost" and lost["since"] - gone <= 17.0
        resp = await web.get(f"/api/v1/events?camera={cid}", headers=bearer(token))
        assert (await resp.json())["events"][0]["to_state"] == "unmonitored"


async def test_a_camera_is_ok_only_after_a_checked_picture(
    aiohttp_client: Any, make_app: Any
) -> None:
    """Two new cameras on a real relay: one nobody can reach, one sending a good picture. The
    unreachable one is never shown ``ok``: ``unmonitored`` (being checked) until ``offline``
    is raised on time; the good one turns ``ok`` on its first checked picture, with it as
    evidence."""
    web = await aiohttp_client(make_app(roles=("web", "checker"), allow_networks=LOOPBACK))
    with RtspCamera(width=320, height=240, fps=10, gop=20, source=CLIPS / "good.mp4") as cam:
        await aiohttp_client(make_app(roles=("relay",), allow_networks=LOOPBACK))
        rid, token = await register(web)
        unreachable = "rtsp://127.0.0.1:9/stream"  # discard port: connection refused
        dead = await add_camera(web, rid, token, url=unreachable, username=None, password=None)
        good = await add_camera(web, rid, token, url=cam.url, username=None, password=None)
        seen: dict[str, set[tuple[str, str]]] = {dead["id"]: set(), good["id"]: set()}

        async def settled() -> bool:
            for cid, states in seen.items():
                body = await state_of(web, cid, token)
                states.add((body["state"], body["cause"]))
            return ("offline", "offline") in seen[dead["id"]] and ("ok", "checked") in seen[
                good["id"]
            ]

        done: bool = await eventually(
            settled, "the unreachable camera offline, the good one ok", 30.0
        )
        assert done and {state for state, _ in seen[dead["id"]]} == {"unmonitored", "offline"}
        assert ("unmonitored", "awaiting_evidence") in seen[dead["id"]]  # held, being checked
        assert {state for state, _ in seen[good["id"]]} <= {"unmonitored", "ok"}

        # The events are every change of the published state: never ok before evidence.
        resp = await web.get(f"/api/v1/events?camera={dead['id']}", headers=bearer(token))
        (offline,) = (await resp.json())["events"]
        assert (offline["from_state"], offline["to_state"]) == ("unmonitored", "offline")
        since = offline["measures"]["offline.since"]
        delay = offline["t"] - since
        assert 6.0 <= delay <= 10.0, delay  # not before offline_raise_s; within the 10 s target
        resp = await web.get(f"/api/v1/events?camera={good['id']}", headers=bearer(token))
        (checked,) = (await resp.json())["events"]
        assert (checked["from_state"], checked["to_state"]) == ("unmonitored", "ok")
        assert checked["cause"] == "checked" and checked["snapshot"]
        snap = await web.get(f"/api/v1/snapshots/{checked['snapshot']}", headers=bearer(token))
        assert snap.status == 200 and (await snap.read()).startswith(b"\xff\xd8")
