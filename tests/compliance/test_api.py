"""The compliance API through the real app: states and events with filters and pages,
snapshots and reference views with access rules, and webhook settings."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp.test_utils import TestClient

from kitchencam import appkeys
from kitchencam.compliance.checker import Checker
from kitchencam.compliance.frames import JpegSnapshot
from kitchencam.compliance.records import Kind, News
from tests.compliance.support import regulator
from tests.helpers import add_camera, bearer, register


async def api(aiohttp_client: Any, make_app: Any) -> TestClient:
    app = make_app(webhook_allow_networks=[ipaddress.ip_network("127.0.0.1/32")])
    client: TestClient = await aiohttp_client(app)
    return client


async def say(client: TestClient, cid: str, kind: Kind, t: float, to: str, **extra: Any) -> None:
    """A relay's news about a camera, applied by a checker at once."""
    compliance = client.app[appkeys.COMPLIANCE]
    camera = await compliance.registry.get_camera(cid)
    snaps = extra.pop("snaps", ())
    if kind in (Kind.HELD, Kind.MONITOR):
        await compliance.store.refresh_held([cid], "relay-1")
    news = News(kind=kind, camera=cid, t=t, to_state=to, cause=to, **extra)
    await compliance.store.publish(news, snaps, camera.restaurant_id)
    checker = Checker(compliance.store, compliance.registry, "checker-a")
    await checker.ensure_groups()
    while await checker.read_once(block_ms=10):
        pass


async def two_restaurants(client: TestClient) -> dict[str, Any]:
    rid1, tok1 = await register(client, district="Wan Chai")
    rid2, tok2 = await register(client, district="Central")
    cam1 = (await add_camera(client, rid1, tok1))["id"]
    cam2 = (await add_camera(client, rid2, tok2))["id"]
    reg = await regulator(client.app[appkeys.REDIS])
    return {
        "rid1": rid1,
        "tok1": tok1,
        "rid2": rid2,
        "tok2": tok2,
        "cam1": cam1,
        "cam2": cam2,
        "reg": reg,
    }


async def test_states_filters_and_access(aiohttp_client: Any, make_app: Any) -> None:
    client = await api(aiohttp_client, make_app)
    w = await two_restaurants(client)
    await say(client, w["cam1"], Kind.HELD, 100.0, "ok")
    await say(client, w["cam1"], Kind.MONITOR, 110.0, "covered", from_state="ok")

    resp = await client.get("/api/v1/states", headers=bearer(w["reg"]))
    states = {s["camera_id"]: s for s in (await resp.json())["states"]}
    assert states[w["cam1"]]["state"] == "covered" and states[w["cam1"]]["monitored"]
    assert states[w["cam2"]]["state"] == "unmonitored"  # no relay has analysed it yet
    resp = await client.get("/api/v1/states?district=Central", headers=bearer(w["reg"]))
    assert [s["camera_id"] for s in (await resp.json())["states"]] == [w["cam2"]]
    resp = await client.get("/api/v1/states?state=covered", headers=bearer(w["reg"]))
    assert [s["camera_id"] for s in (await resp.json())["states"]] == [w["cam1"]]
    # A restaurant sees its own cameras only, and may not ask for another's.
    resp = await client.get("/api/v1/states", headers=bearer(w["tok2"]))
    assert [s["camera_id"] for s in (await resp.json())["states"]] == [w["cam2"]]
    resp = await client.get(f"/api/v1/states?restaurant={w['rid1']}", headers=bearer(w["tok2"]))
    assert resp.status == 403
    resp = await client.get(f"/api/v1/cameras/{w['cam1']}/state", headers=bearer(w["tok2"]))
    assert resp.status == 403
    resp = await client.get("/api/v1/states?state=purple", headers=bearer(w["reg"]))
    assert resp.status == 400
    assert (await client.get("/api/v1/states")).status == 401


async def test_camera_state_has_uptime(aiohttp_client: Any, make_app: Any) -> None:
    import time

    client = await api(aiohttp_client, make_app)
    w = await two_restaurants(client)
    created = (await client.app[appkeys.REGISTRY].get_camera(w["cam1"])).created_at
    await say(client, w["cam1"], Kind.HELD, created, "ok")
    await say(client, w["cam1"], Kind.MONITOR, time.time(), "dark", from_state="ok")
    resp = await client.get(f"/api/v1/cameras/{w['cam1']}/state", headers=bearer(w["tok1"]))
    body = await resp.json()
    assert body["state"] == "dark"
    for window in ("24h", "7d", "30d"):
        up = body["uptime"][window]
        assert up["ok_s"] > 0 and up["faulty_s"] > 0
        assert abs(up["uptime"] - up["ok_s"] / (up["ok_s"] + up["faulty_s"])) < 0.02
    day = body["uptime"]["24h"]
    assert day["excluded_s"] == 0  # nothing before registration counts


async def test_events_filters_and_cursor_pages(aiohttp_client: Any, make_app: Any) -> None:
    client = await api(aiohttp_client, make_app)
    w = await two_restaurants(client)
    await say(client, w["cam1"], Kind.HELD, 100.0, "ok")
    for i, state in enumerate(["dark", "ok", "covered", "ok"]):
        await say(client, w["cam1"], Kind.MONITOR, 110.0 + 10 * i, state)
    await say(client, w["cam2"], Kind.HELD, 105.0, "ok")
    reg = bearer(w["reg"])

    resp = await client.get("/api/v1/events?limit=2", headers=reg)
    page = await resp.json()
    assert [e["t"] for e in page["events"]] == [140.0, 130.0]
    resp = await client.get(f"/api/v1/events?limit=2&cursor={page['next_cursor']}", headers=reg)
    assert [e["t"] for e in (await resp.json())["events"]] == [120.0, 110.0]
    resp = await client.get("/api/v1/events?district=Central", headers=reg)
    assert [e["camera_id"] for e in (await resp.json())["events"]] == [w["cam2"]]
    resp = await client.get(f"/api/v1/events?camera={w['cam1']}&state=ok", headers=reg)
    assert [e["t"] for e in (await resp.json())["events"]] == [140.0, 120.0, 100.0]
    resp = await client.get("/api/v1/events?since=115&until=135", headers=reg)
    assert [e["t"] for e in (await resp.json())["events"]] == [130.0, 120.0]
    resp = await client.get("/api/v1/events", headers=bearer(w["tok2"]))
    assert {e["restaurant_id"] for e in (await resp.json())["events"]} == {w["rid2"]}
    resp = await client.get(f"/api/v1/events?camera={w['cam1']}", headers=bearer(w["tok2"]))
    assert resp.status == 403
    one = page["events"][0]
    resp = await client.get(f"/api/v1/events/{one['id']}", headers=bearer(w["tok1"]))
    assert (await resp.json())["to_state"] == "ok"
    resp = await client.get(f"/api/v1/events/{one['id']}", headers=bearer(w["tok2"]))
    assert resp.status == 403


async def test_snapshots_only_for_their_restaurant_and_regulators(
    aiohttp_client: Any, make_app: Any
) -> None:
    client = await api(aiohttp_client, make_app)
    w = await two_restaurants(client)
    snap = JpegSnapshot.of(b"\xff\xd8 evidence \xff\xd9")
    await say(client, w["cam1"], Kind.MONITOR, 100.0, "moved", snapshot=snap.sha256, snaps=[snap])
    url = f"/api/v1/snapshots/{snap.sha256}"
    for token, status in ((w["tok1"], 200), (w["reg"], 200), (w["tok2"], 403)):
        resp = await client.get(url, headers=bearer(token))
        assert resp.status == status
        if status == 200:
            assert resp.content_type == "image/jpeg" and await resp.read() == snap.data
    resp = await client.get("/api/v1/snapshots/" + "0" * 64, headers=bearer(w["reg"]))
    assert resp.status == 404


async def test_reference_reapproved_by_restaurant_or_regulator(
    aiohttp_client: Any, make_app: Any
) -> None:
    client = await api(aiohttp_client, make_app)
    w = await two_restaurants(client)
    store = client.app[appkeys.COMPLIANCE].store
    url = f"/api/v1/cameras/{w['cam1']}/reference"
    assert (await client.get(url, headers=bearer(w["tok1"]))).status == 404
    resp = await client.post(url, json={}, headers=bearer(w["tok1"]))
    assert resp.status == 409  # no picture yet
    preview = JpegSnapshot.of(b"\xff\xd8 preview \xff\xd9")
    await store.save_preview(w["cam1"], preview, 100.0)
    resp = await client.post(url, json={}, headers=bearer(w["tok1"]))
    assert resp.status == 201
    body = await resp.json()
    assert body["approved_by"] == f"restaurant:{w['rid1']}" and body["snapshot"] == preview.sha256
    # A regulator approves a stored snapshot of the camera instead.
    snap = JpegSnapshot.of(b"\xff\xd8 another view \xff\xd9")
    await say(client, w["cam1"], Kind.MONITOR, 110.0, "moved", snapshot=snap.sha256, snaps=[snap])
    resp = await client.post(url, json={"snapshot": snap.sha256}, headers=bearer(w["reg"]))
    assert resp.status == 201 and (await resp.json())["approved_by"] == "regulator:inspector"
    resp = await client.get(url, headers=bearer(w["tok1"]))
    assert (await resp.json())["snapshot"] == snap.sha256
    assert await store.reference_jpeg(w["cam1"]) == snap.data
    # Another restaurant may not, nor approve another camera's snapshot.
    assert (await client.post(url, json={}, headers=bearer(w["tok2"]))).status == 403
    other = f"/api/v1/cameras/{w['cam2']}/reference"
    resp = await client.post(other, json={"snapshot": snap.sha256}, headers=bearer(w["tok2"]))
    assert resp.status == 422


async def test_webhook_settings_show_the_secret_once(aiohttp_client: Any, make_app: Any) -> None:
    client = await api(aiohttp_client, make_app)
    w = await two_restaurants(client)
    url = f"/api/v1/restaurants/{w['rid1']}/webhook"
    resp = await client.put(url, json={"url": "http://127.0.0.1:9/hook"}, headers=bearer(w["tok1"]))
    assert resp.status == 201
    body = await resp.json()
    assert body["secret"].startswith("whsec_") and body["url"] == "http://127.0.0.1:9/hook"
    resp = await client.get(url, headers=bearer(w["tok1"]))
    shown = await resp.json()
    assert "secret" not in shown and body["secret"] not in await resp.text()
    raw = await client.app[appkeys.REDIS].get(f"kc:restaurant:{w['rid1']}:webhook")
    assert body["secret"] not in raw  # stored encrypted
    resp = await client.put(url, json={"url": "http://10.0.0.1/x"}, headers=bearer(w["tok1"]))
    assert resp.status == 422 and "private" in (await resp.json())["error"]["detail"]
    assert (await client.get(url, headers=bearer(w["reg"]))).status == 403
    assert (await client.get(url, headers=bearer(w["tok2"]))).status == 403
    deliveries = await client.get(url + "/deliveries", headers=bearer(w["tok1"]))
    assert (await deliveries.json())["attempts"] == []
    assert (await client.delete(url, headers=bearer(w["tok1"]))).status == 204
    assert (await client.get(url, headers=bearer(w["tok1"]))).status == 404
