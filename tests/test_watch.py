"""The consumer watch page ``/r/{rid}``: public, escaped, enabled cameras only, nothing secret;
its status JSON, placeholders with the last good picture, QR codes, and the demo set-up."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
import pytest
import zxingcpp
from aiohttp import web
from aiohttp.test_utils import TestClient

from kitchencam import appkeys, demo, keys
from kitchencam.compliance.records import CameraState, Event
from kitchencam.compliance.states import State
from kitchencam.models import Camera
from kitchencam.watch import PLAYABLE, card
from tests.helpers import add_camera, register

Client = TestClient[web.Request, web.Application]

CANARY_USER = "cam-admin-canary"
CANARY_PASSWORD = "Canary-p@ss:word-77"
CAMERA_HOST = "camera.example.com"
JPEG = b"\xff\xd8\xff\xe0" + b"last good picture" + b"\xff\xd9"
CARD_FIELDS = {
    "id",
    "name",
    "location",
    "state",
    "title",
    "note",
    "since",
    "playable",
    "viewers",
    "snapshot",
    "whep",
}


async def _restaurant(client: Client) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    rid, token = await register(client, name='Wok & <Roll> "Kitchen"')
    shown = await add_camera(
        client,
        rid,
        token,
        name="Wok <line>",
        location="hot kitchen & woks",
        username=CANARY_USER,
        password=CANARY_PASSWORD,
    )
    hidden = await add_camera(client, rid, token, name="Storeroom canary", enabled=False)
    return rid, token, shown, hidden


async def _put_state(client: Client, camera: dict[str, Any], state: State, **extra: Any) -> None:
    record = CameraState(
        camera_id=camera["id"],
        restaurant_id=camera["restaurant_id"],
        district="Wan Chai",
        state=state,
        since=extra.pop("since", 1_790_000_000.0),
        cause="covered",
        detail=f"host {CAMERA_HOST} says hello",
        relay="relay-internal-7",
        **extra,
    )
    await client.app[appkeys.REDIS].set(keys.camera_state(camera["id"]), record.model_dump_json())
    client.app[appkeys.WATCH_CACHE].clear()


async def _put_live(client: Client, camera: dict[str, Any], figures: dict[str, Any]) -> None:
    await client.app[appkeys.REDIS].set(keys.live(camera["id"]), json.dumps(figures))
    client.app[appkeys.WATCH_CACHE].clear()


async def _put_snapshot(client: Client, camera: dict[str, Any], jpeg: bytes) -> str:
    sha = hashlib.sha256(jpeg).hexdigest()
    await client.app[appkeys.REDIS].hset(
        keys.snapshot(sha),
        mapping={
            "jpeg": base64.b64encode(jpeg).decode(),
            "camera": camera["id"],
            "restaurant": camera["restaurant_id"],
            "t": "1790000000.0",
        },
    )
    return sha


async def _put_event(client: Client, camera: dict[str, Any], last_good: str) -> str:
    eid = f"{int(time.time() * 1000)}-0"
    event = Event(
        id=eid,
        camera_id=camera["id"],
        restaurant_id=camera["restaurant_id"],
        district="Wan Chai",
        t=1_790_000_000.0,
        from_state=State.OK,
        to_state=State.COVERED,
        cause="covered",
        detail="",
        last_good=last_good,
    )
    await client.app[appkeys.REDIS].set(keys.event(eid), event.model_dump_json())
    return eid


async def test_the_page_shows_the_restaurant_and_its_enabled_cameras_escaped(
    client: Client,
) -> None:
    rid, _token, shown, hidden = await _restaurant(client)
    resp = await client.get(f"/r/{rid}")
    assert resp.status == 200
    html = await resp.text()
    assert "Wok &amp; &lt;Roll&gt; &#34;Kitchen&#34;" in html
    assert "<Roll>" not in html and "Wok <line>" not in html
    assert "Wok &lt;line&gt;" in html and "hot kitchen &amp; woks" in html
    assert shown["id"] in html
    assert hidden["id"] not in html and "Storeroom canary" not in html
    assert html.count("<video ") == 2  # the camera's, and the template for cameras to come
    assert "playsinline muted autoplay" in html
    data = json.loads(html.split('id="watch-data">', 1)[1].split("</script>", 1)[0])
    assert [c["id"] for c in data["cameras"]] == [shown["id"]]
    assert data["cameras"][0]["whep"] == f"/whep/{shown['id']}"
    # Public and the same for everyone: no session, no form token, no cookie.
    assert "Set-Cookie" not in resp.headers
    assert resp.headers["Cache-Control"].startswith("public")
    assert '<meta name="csrf-token" content="">' in html


async def test_the_page_and_its_status_carry_nothing_secret(client: Client) -> None:
    rid, token, shown, _ = await _restaurant(client)
    await _put_state(client, shown, State.COVERED)
    await _put_live(
        client, shown, {"state": "live", "viewers": 2, "detail": f"rtsp://{CAMERA_HOST}/x"}
    )
    for path in (f"/r/{rid}", f"/r/{rid}/status.json"):
        text = await (await client.get(path)).text()
        for secret in (
            CAMERA_HOST,
            "rtsp",
            "93.184.216.34",
            CANARY_USER,
            CANARY_PASSWORD,
            token,
            "kcr_",
            "redis",
            "127.0.0.1",
            "localhost",
            "relay-internal-7",
            "says hello",
        ):
            assert secret not in text, (path, secret)


async def test_status_json_lists_states_since_and_viewers(client: Client) -> None:
    rid, _, shown, _hidden = await _restaurant(client)
    resp = await client.get(f"/r/{rid}/status.json")
    assert resp.status == 200
    body = await resp.json()
    assert body["restaurant"] == {"id": rid, "name": 'Wok & <Roll> "Kitchen"'}
    (cam,) = body["cameras"]
    assert set(cam) == CARD_FIELDS
    # Nothing judged yet: it plays (the player shows nothing as live until pictures come).
    assert cam["playable"] is True and cam["state"] == "ok" and cam["viewers"] is None

    await _put_live(client, shown, {"state": "live", "viewers": 3})
    await _put_state(client, shown, State.OK, since=1_790_000_123.0)
    (cam,) = (await (await client.get(f"/r/{rid}/status.json")).json())["cameras"]
    assert cam["playable"] is True and cam["viewers"] == 3 and cam["since"] == 1_790_000_123.0
    assert cam["snapshot"] is None


async def test_a_camera_that_is_not_ok_shows_a_placeholder_with_its_last_good_picture(
    client: Client,
) -> None:
    rid, _, shown, _ = await _restaurant(client)
    sha = await _put_snapshot(client, shown, JPEG)
    eid = await _put_event(client, shown, sha)
    await _put_state(client, shown, State.COVERED, since=1_790_000_000.0, last_event=eid)
    (cam,) = (await (await client.get(f"/r/{rid}/status.json")).json())["cameras"]
    assert cam["playable"] is False
    assert (cam["state"], cam["title"]) == ("covered", "Lens covered")
    assert cam["since"] == 1_790_000_000.0
    snapshot_url = f"/r/{rid}/cameras/{shown['id']}/last-good.jpg"
    assert cam["snapshot"] == snapshot_url

    html = await (await client.get(f"/r/{rid}")).text()
    assert "Lens covered" in html and 'datetime="2026-09-21T' in html
    assert f'src="{snapshot_url}"' in html

    resp = await client.get(snapshot_url)
    assert resp.status == 200 and resp.content_type == "image/jpeg"
    assert await resp.read() == JPEG
    assert resp.headers["Cache-Control"].startswith("public")
    again = await client.get(snapshot_url, headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_a_camera_without_a_last_good_picture_asks_for_none(client: Client) -> None:
    rid, _, shown, _ = await _restaurant(client)
    await _put_state(client, shown, State.OFFLINE, since=1_790_000_000.0)
    (cam,) = (await (await client.get(f"/r/{rid}/status.json")).json())["cameras"]
    assert cam["playable"] is False and cam["title"] == "Camera offline"
    assert cam["snapshot"] is None and cam["viewers"] is None
    html = await (await client.get(f"/r/{rid}")).text()
    assert "last-good.jpg" not in html
    # No "0 watching" beside a placeholder, even while the relay reports a count.
    await _put_live(client, shown, {"state": "live", "viewers": 0})
    html = await (await client.get(f"/r/{rid}")).text()
    assert "watching" not in html


async def test_the_snapshot_route_never_shows_another_cameras_picture(client: Client) -> None:
    rid, _token, shown, hidden = await _restaurant(client)
    other_rid, other_token = await register(client)
    other = await add_camera(client, other_rid, other_token)
    foreign = await _put_snapshot(client, other, b"\xff\xd8 someone else's kitchen \xff\xd9")
    eid = await _put_event(client, shown, foreign)
    await _put_state(client, shown, State.COVERED, last_event=eid)
    assert (await client.get(f"/r/{rid}/cameras/{shown['id']}/last-good.jpg")).status == 404
    # Not through another restaurant's page, nor for a camera switched off, nor a bad id.
    mine = await _put_snapshot(client, hidden, JPEG)
    await _put_state(
        client, hidden, State.DISABLED, last_event=await _put_event(client, hidden, mine)
    )
    for path in (
        f"/r/{other_rid}/cameras/{shown['id']}/last-good.jpg",
        f"/r/{rid}/cameras/{hidden['id']}/last-good.jpg",
        f"/r/{rid}/cameras/{other['id']}/last-good.jpg",
        f"/r/{rid}/cameras/..%2f..%2fetc/last-good.jpg",
    ):
        assert (await client.get(path)).status == 404, path


async def test_an_unknown_restaurant_is_a_404_page(client: Client) -> None:
    resp = await client.get("/r/0123456789abcdef")
    assert resp.status == 404
    assert "no such restaurant" in await resp.text()
    assert (await client.get("/r/0123456789abcdef/status.json")).status == 404
    assert (await client.get("/r/0123456789abcdef/qr.svg")).status == 404
    assert (await client.get("/r/bad%20id%3C/status.json")).status == 404


def _decode_qr(png: bytes) -> list[str]:
    frames = av.CodecContext.create("png", "r").decode(av.Packet(png))
    pixels = frames[0].to_ndarray(format="gray")
    assert isinstance(pixels, np.ndarray)
    return [r.text for r in zxingcpp.read_barcodes(pixels)]


async def test_the_qr_code_encodes_the_pages_address(client: Client) -> None:
    rid, _, _, _ = await _restaurant(client)
    resp = await client.get(f"/r/{rid}/qr.png")
    assert resp.status == 200 and resp.content_type == "image/png"
    page = str(client.make_url(f"/r/{rid}"))
    assert _decode_qr(await resp.read()) == [page]
    assert resp.headers["Cache-Control"].startswith("private")  # from the Host header

    svg = await client.get(f"/r/{rid}/qr.svg")
    assert svg.status == 200 and svg.content_type == "image/svg+xml"
    root = ET.fromstring(await svg.text())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    title = root.find("{http://www.w3.org/2000/svg}title")
    assert title is not None and title.text is not None and title.text.endswith(page)
    assert root.find("{http://www.w3.org/2000/svg}path") is not None


async def test_the_qr_code_uses_the_configured_public_address(
    aiohttp_client: Callable[..., Awaitable[Client]], make_app: Callable[..., Any]
) -> None:
    client = await aiohttp_client(make_app(public_url="https://kitchens.example.com/"))
    rid, _ = await register(client)
    resp = await client.get(f"/r/{rid}/qr.png")
    assert _decode_qr(await resp.read()) == [f"https://kitchens.example.com/r/{rid}"]
    assert resp.headers["Cache-Control"].startswith("public")


def _camera() -> Camera:
    return Camera(
        id="c1",
        restaurant_id="r1",
        name="Wok",
        location="hot",
        url="rtsp://camera.example.com/live",
        created_at=1.0,
        updated_at=1.0,
    )


def _state(state: State) -> CameraState:
    return CameraState(
        camera_id="c1", restaurant_id="r1", district="d", state=state, since=5.0, relay="x"
    )


@pytest.mark.parametrize("state", list(State))
def test_card_plays_only_in_playable_states(state: State) -> None:
    shown = card(_camera(), "r1", _state(state), {"state": "live", "viewers": 4})
    assert shown.playable is (state in PLAYABLE)
    assert shown.viewers == 4 and shown.title and shown.since == 5.0
    assert (shown.snapshot is None) is shown.playable
    assert "camera.example.com" not in json.dumps(shown.public())


def test_card_shows_connecting_while_the_relay_has_no_video() -> None:
    shown = card(_camera(), "r1", _state(State.OK), {"state": "retrying", "since": 9.0})
    assert (shown.state, shown.playable, shown.since) == ("connecting", False, 9.0)
    fault = card(_camera(), "r1", _state(State.OFFLINE), {"state": "retrying", "since": 9.0})
    assert (fault.state, fault.since) == ("offline", 5.0)  # the verdict wins over the relay
    assert card(_camera(), "r1", None, None).playable is True


async def test_the_demo_set_up_is_idempotent_and_its_page_serves(
    aiohttp_client: Callable[..., Awaitable[Client]], make_app: Callable[..., Any]
) -> None:
    client = await aiohttp_client(make_app(demo=True))
    app = client.app
    first = await demo.setup(
        app[appkeys.REDIS], app[appkeys.REGISTRY], app[appkeys.SETTINGS].data_dir
    )
    second = await demo.setup(
        app[appkeys.REDIS], app[appkeys.REGISTRY], app[appkeys.SETTINGS].data_dir
    )
    assert first == second
    users = app[appkeys.USERS]
    assert await users.verify_password(first.regulator, first.password) is not None
    cameras = await app[appkeys.REGISTRY].list_cameras(first.restaurant_id)
    assert sorted(c.name for c in cameras) == sorted(name for name, _, _ in demo.CAMERAS)
    html = await (await client.get(f"/r/{first.restaurant_id}")).text()
    for name, _, _ in demo.CAMERAS:
        assert name in html
    assert "demo.invalid" not in html
    lines = "\n".join(first.lines("http://127.0.0.1:8080"))
    assert f"http://127.0.0.1:8080/r/{first.restaurant_id}" in lines
    assert first.password in lines and "/board" in lines and "/signup" in lines
