"""The restaurant portal through the real app, real Redis and a real RTSP camera: sign-up,
sign-in, cameras added and changed with form posts, isolation between restaurants, write-only
passwords, escaping, connection tests, reference views and webhooks."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient

from kitchencam import appkeys
from kitchencam.compliance.frames import JpegSnapshot
from kitchencam.models import Camera
from tests.browsing import (
    RESTAURANT_PASSWORD,
    csrf_from,
    post_form,
    sign_in,
    sign_up,
    token_for,
)
from tests.conftest import AppFactory
from tests.helpers import bearer, camera_body
from tests.support.camera import RtspCamera

CAMERA_PASSWORD = "s3cret@with:colon"
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


def camera_form(**overrides: Any) -> dict[str, Any]:
    """The add-camera form's fields (a public address: never connected to)."""
    body = {**camera_body(), "transport": "tcp", "enabled": "1", "substream_url": ""}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def signed_up(client: TestClient, email: str = "chef@golden-wok.example") -> str:
    """Register a restaurant through the sign-up page; return its id."""
    resp, html = await sign_up(client, email)
    assert resp.status == 201, html
    registry = client.app[appkeys.REGISTRY]
    restaurants = await registry.list_restaurants()
    rid: str = next(r.id for r in restaurants if r.name in html)
    return rid


async def added(client: TestClient, **overrides: Any) -> str:
    """Add a camera with the portal's form; return its id."""
    resp = await post_form(
        client, "/portal/cameras", camera_form(**overrides), token_page="/portal"
    )
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    found = re.fullmatch(r"/portal/cameras/([0-9a-f]+)\?notice=added", location)
    assert found, location
    return found.group(1)


async def stored(client: TestClient, cid: str) -> Camera:
    camera: Camera = await client.app[appkeys.REGISTRY].get_camera(cid)
    return camera


async def test_sign_up_then_sign_in_add_a_camera_and_see_it(client: TestClient) -> None:
    resp, html = await sign_up(client)
    assert resp.status == 201
    token = re.search(r'id="api-token">(kcr_[^<]+)<', html)
    assert token is not None
    assert "shown only this once" in html
    me = await client.get("/api/v1/me", headers=bearer(token.group(1)))
    assert (await me.json())["kind"] == "restaurant"
    assert "Sign out" in html  # signed in at once

    await post_form(client, "/signout", {}, token_page="/portal")
    assert (await client.get("/portal", allow_redirects=False)).status == 303
    resp = await sign_in(client, "Chef@Golden-Wok.example", RESTAURANT_PASSWORD)
    assert (resp.status, resp.headers["Location"]) == (303, "/portal")

    portal = await (await client.get("/portal")).text()
    assert "No cameras yet" in portal
    assert token.group(1) not in portal  # the API token is never shown again
    cid = await added(client, name="Wok line", location="above the woks")
    page = await client.get(f"/portal/cameras/{cid}?notice=added")
    assert page.status == 200
    text = await page.text()
    assert "The camera was added" in text and "Wok line" in text
    portal = await (await client.get("/portal")).text()
    assert f'href="/portal/cameras/{cid}"' in portal
    assert 'class="badge state-unmonitored"' in portal
    assert "above the woks" in portal


async def test_an_account_goes_with_its_restaurant(client: TestClient) -> None:
    _, html = await sign_up(client)
    token = re.search(r'id="api-token">(kcr_[^<]+)<', html)
    assert token is not None
    me = await (await client.get("/api/v1/me", headers=bearer(token.group(1)))).json()
    resp = await client.delete(f"/api/v1/restaurants/{me['id']}", headers=bearer(token.group(1)))
    assert resp.status == 204
    assert (await client.get("/portal", allow_redirects=False)).status == 303  # signed out
    resp = await sign_in(client, "chef@golden-wok.example", RESTAURANT_PASSWORD)
    assert resp.status == 401
    resp, _ = await sign_up(client)  # the address is free again
    assert resp.status == 201


async def test_sign_up_shows_what_to_fix_and_keeps_values_but_not_passwords(
    client: TestClient,
) -> None:
    resp, html = await sign_up(
        client,
        "not-an-address",
        licence_number="x!",
        name="Wok <b>bold</b>",
        password="short",
        password_again="other",
    )
    assert resp.status == 422
    assert "enter an e-mail address" in html
    assert "passwords need at least 10 characters" in html
    assert "the two passwords differ" in html
    assert "String should match pattern" in html  # the API's own message for the licence
    assert 'value="Wok &lt;b&gt;bold&lt;/b&gt;"' in html
    assert "short" not in html.replace("shortly", "")
    resp, _ = await sign_up(client)
    assert resp.status == 201
    await post_form(client, "/signout", {}, token_page="/portal")
    resp, html = await sign_up(client)  # the same e-mail address (and licence) again
    assert resp.status == 422
    assert "exists already; sign in instead" in html


async def test_camera_form_gives_the_api_s_validation_messages(client: TestClient) -> None:
    _, html = await sign_up(client)
    api_token = re.search(r'id="api-token">(kcr_[^<]+)<', html)
    assert api_token is not None
    rid = (await (await client.get("/api/v1/me", headers=bearer(api_token.group(1)))).json())["id"]
    cases = [
        {"url": "http://camera.example.com/live"},
        {"url": "rtsp://10.0.0.5/stream"},
        {"username": "a:b"},
        {"name": "   "},
    ]
    for case in cases:
        form = camera_form(**case)
        resp = await post_form(client, "/portal/cameras", form, token_page="/portal")
        assert resp.status == 422
        page = await resp.text()
        api = await client.post(
            f"/api/v1/restaurants/{rid}/cameras",
            json={**camera_body(), **case},
            headers=bearer(api_token.group(1)),
        )
        detail = (await api.json())["error"]
        messages = [f["message"] for f in detail.get("fields", [])] or [detail["detail"]]
        for message in messages:
            escaped = message.replace("'", "&#39;").replace('"', "&#34;")
            assert escaped in page, (case, message)
        assert CAMERA_PASSWORD not in page
    assert (await client.app[appkeys.REGISTRY].list_cameras(rid)) == []


async def test_passwords_are_write_only_and_names_escaped(client: TestClient) -> None:
    await signed_up(client)
    name = '<script>alert("x")</script> & grill'
    cid = await added(client, name=name)
    registry = client.app[appkeys.REGISTRY]
    html = await (await client.get(f"/portal/cameras/{cid}")).text()
    assert CAMERA_PASSWORD not in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; grill" in html
    assert "A password is stored. Leave empty to keep it." in html
    assert "<script>alert" not in await (await client.get("/portal")).text()

    edit = camera_form(name="Wok line", password="", location="hot side")
    resp = await post_form(client, f"/portal/cameras/{cid}", edit, token_page="/portal")
    assert (resp.status, resp.headers["Location"]) == (303, f"/portal/cameras/{cid}?notice=saved")
    camera = await stored(client, cid)
    assert (camera.name, camera.location) == ("Wok line", "hot side")
    assert registry.camera_password(camera) == CAMERA_PASSWORD  # kept

    edit = camera_form(password="new password")
    await post_form(client, f"/portal/cameras/{cid}", edit, token_page="/portal")
    assert registry.camera_password(await stored(client, cid)) == "new password"
    page = await (await client.get(f"/portal/cameras/{cid}")).text()
    assert "new password" not in page

    edit = camera_form(password="", remove_password="1")
    await post_form(client, f"/portal/cameras/{cid}", edit, token_page="/portal")
    assert (await stored(client, cid)).password_enc is None
    assert "No password is stored." in await (await client.get(f"/portal/cameras/{cid}")).text()

    bad = camera_form(url="rtsp://user:pw@camera.example.com/x", password="typed again")
    resp = await post_form(client, f"/portal/cameras/{cid}", bad, token_page="/portal")
    assert resp.status == 422
    page = await resp.text()
    assert "typed again" not in page
    assert "not in the address" in page


async def test_switch_off_on_and_delete(client: TestClient) -> None:
    await signed_up(client)
    cid = await added(client)
    page = f"/portal/cameras/{cid}"
    resp = await post_form(client, f"{page}/enabled", {"enabled": "0"}, token_page=page)
    assert resp.status == 303
    assert not (await stored(client, cid)).enabled
    html = await (await client.get(page)).text()
    assert "Switch on" in html and 'class="badge state-disabled"' in html
    await post_form(client, f"{page}/enabled", {"enabled": "1"}, token_page=page)
    assert (await stored(client, cid)).enabled

    confirm = await client.get(f"{page}/delete")
    assert "This cannot be undone" in await confirm.text()
    resp = await post_form(client, f"{page}/delete", {}, token_page=f"{page}/delete")
    assert (resp.status, resp.headers["Location"]) == (303, "/portal?notice=deleted")
    assert (await client.get(page)).status == 404


async def test_a_restaurant_cannot_see_or_change_another_s_cameras(client: TestClient) -> None:
    alice = client
    await signed_up(alice, "alice@example.com")
    cid = await added(alice, name="Alice's wok")
    store = alice.app[appkeys.COMPLIANCE].store
    camera = await stored(alice, cid)
    await store.save_preview(cid, JpegSnapshot.of(b"\xff\xd8 alice \xff\xd9"), time.time())

    bob: TestClient = TestClient(alice.server)  # another browser (its own cookies), the same server
    try:
        await _bob_tries(alice, bob, cid, camera)
    finally:
        await bob.close()


async def _bob_tries(alice: TestClient, bob: TestClient, cid: str, camera: Camera) -> None:
    store = alice.app[appkeys.COMPLIANCE].store
    await signed_up(bob, "bob@example.com")
    token = await token_for(bob, "/portal")
    page = f"/portal/cameras/{cid}"
    for path in (page, f"{page}/delete", f"{page}/preview.jpg"):
        resp = await bob.get(path)
        assert resp.status == 404, path
        assert "Alice" not in await resp.text()
    posts = {
        page: camera_form(name="Bob was here"),
        f"{page}/enabled": {"enabled": "0"},
        f"{page}/delete": {},
        f"{page}/reference": {},
        "/portal/probe": {**camera_form(), "camera": cid},
    }
    for path, data in posts.items():
        resp = await bob.post(path, data={**data, "csrf_token": token}, allow_redirects=False)
        assert resp.status == 404, path
    resp = await bob.post("/api/v1/probe", json={"camera": cid}, headers={"X-CSRF-Token": token})
    assert resp.status == 404
    assert await stored(alice, cid) == camera
    assert await store.reference(cid) is None
    assert "Alice" not in await (await bob.get("/portal")).text()


async def test_reference_view_preview_and_events(client: TestClient) -> None:
    await signed_up(client)
    cid = await added(client)
    page = f"/portal/cameras/{cid}"
    resp = await post_form(client, f"{page}/reference", {}, token_page=page)
    assert resp.status == 409
    assert "no recent picture" in await resp.text()

    store = client.app[appkeys.COMPLIANCE].store
    jpeg = JpegSnapshot.of(b"\xff\xd8 the kitchen \xff\xd9")
    await store.save_preview(cid, jpeg, time.time())
    html = await (await client.get(page)).text()
    assert f'src="{page}/preview.jpg"' in html
    image = await client.get(f"{page}/preview.jpg")
    assert (image.content_type, await image.read()) == ("image/jpeg", jpeg.data)

    resp = await post_form(client, f"{page}/reference", {}, token_page=page)
    assert resp.status == 303
    reference = await store.reference(cid)
    assert reference is not None and reference.approved_by.startswith("restaurant:")
    html = await (await client.get(page)).text()
    assert f"/portal/snapshots/{reference.snapshot}.jpg" in html
    assert "by you" in html
    snap = await client.get(f"/portal/snapshots/{reference.snapshot}.jpg")
    assert await snap.read() == jpeg.data
    assert "No changes recorded yet." in html


async def test_webhook_secret_is_shown_once(client: TestClient) -> None:
    await signed_up(client)
    resp = await post_form(client, "/portal/webhook", {"url": "https://camera.example.com/hook"})
    assert resp.status == 201
    html = await resp.text()
    secret = re.search(r'id="webhook-secret">([^<]+)<', html)
    assert secret is not None
    again = await (await client.get("/portal/webhook")).text()
    assert secret.group(1) not in again
    assert 'value="https://camera.example.com:443/hook"' in again
    resp = await post_form(client, "/portal/webhook", {"url": "http://169.254.169.254/x"})
    assert resp.status == 422
    assert "link-local" in await resp.text()
    resp = await post_form(client, "/portal/webhook/delete", {}, token_page="/portal/webhook")
    assert resp.status == 303
    assert "No webhook is set." in await (await client.get("/portal/webhook")).text()


async def test_connection_test_of_real_cameras_json_and_form(
    aiohttp_client: Callable[..., Any], make_app: AppFactory
) -> None:
    client = await aiohttp_client(make_app(allow_networks=LOOPBACK))
    await signed_up(client)
    token = await token_for(client, "/portal")
    with RtspCamera(width=320, height=240, fps=25, gop=50, codec="h265") as cam:
        resp = await client.post(
            "/api/v1/probe", json={"url": cam.url}, headers={"X-CSRF-Token": token}
        )
        assert resp.status == 200
        body = await resp.json()
    report = body["report"]
    assert (report["codec"], report["width"], report["height"]) == ("hevc", 320, 240)
    assert report["fps"] == 25.0 and report["gop_frames"] == 50
    assert any("H.264 sub-stream" in a["text"] for a in report["advice"])

    with RtspCamera(gop=150, user="viewer", password=CAMERA_PASSWORD) as cam:
        cid = await added(client, url=cam.url, username="viewer", password=CAMERA_PASSWORD)
        # The camera page's no-JavaScript test: empty password = the stored one.
        page = f"/portal/cameras/{cid}"
        form = {**camera_form(url=cam.url, username="viewer", password=""), "camera": cid}
        resp = await post_form(client, "/portal/probe", form, token_page=page)
        html = await resp.text()
    assert resp.status == 200
    assert "Connection test" in html
    assert "H.264, Main profile" in html
    assert "320 \u00d7 240" in html and "25.0 fps" in html
    assert "Keyframes come every at least" in html
    assert CAMERA_PASSWORD not in html
    csrf_from(html)  # the page still has its forms


async def test_connection_test_refuses_hostile_addresses(client: TestClient) -> None:
    await signed_up(client)
    token = await token_for(client, "/portal")
    for url in ("rtsp://127.0.0.1:22/x", "rtsp://169.254.169.254/", "file:///etc/passwd"):
        resp = await client.post(
            "/api/v1/probe", json={"url": url}, headers={"X-CSRF-Token": token}
        )
        assert resp.status == 422, url
    resp = await post_form(
        client, "/portal/probe", camera_form(url="rtsp://10.1.2.3/x"), token_page="/portal"
    )
    html = await resp.text()
    assert resp.status == 200 and "private" in html
    # Regulators and anonymous callers get no probe.
    assert (await client.post("/api/v1/probe", json={"url": "rtsp://x.example/"})).status == 403
