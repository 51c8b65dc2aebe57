"""The JSON API against a real Redis: round trips, validation, status codes."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.helpers import add_camera, bearer, camera_body, register, restaurant_body


async def test_restaurant_round_trip(client: TestClient) -> None:
    resp = await client.post("/api/v1/restaurants", json=restaurant_body(name="Noodle Bar"))
    assert resp.status == 201
    data = await resp.json()
    rid, token = data["restaurant"]["id"], data["token"]
    assert resp.headers["Location"] == f"/api/v1/restaurants/{rid}"
    assert token.startswith("kcr_") and len(token) > 40

    got = await client.get(f"/api/v1/restaurants/{rid}", headers=bearer(token))
    assert got.status == 200
    assert (await got.json())["name"] == "Noodle Bar"

    patched = await client.patch(
        f"/api/v1/restaurants/{rid}", json={"contact": "chef@example.com"}, headers=bearer(token)
    )
    assert patched.status == 200
    assert (await patched.json())["contact"] == "chef@example.com"

    mine = await client.get("/api/v1/restaurants", headers=bearer(token))
    assert [r["id"] for r in (await mine.json())["restaurants"]] == [rid]

    assert (await client.delete(f"/api/v1/restaurants/{rid}", headers=bearer(token))).status == 204
    # The token died with its restaurant.
    assert (await client.get("/api/v1/me", headers=bearer(token))).status == 401


async def test_token_is_shown_once_and_stored_only_as_hash(
    client: TestClient, redis_url: str
) -> None:
    import redis

    _, token = await register(client)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        dump = [r.get(k) for k in r.scan_iter("kc:restaurant:*") if r.type(k) == "string"]
        keys = list(r.scan_iter("*"))
    finally:
        r.close()
    assert all(token not in (v or "") for v in dump)
    assert all(token not in k for k in keys)


async def test_camera_round_trip(client: TestClient) -> None:
    rid, token = await register(client)
    cam = await add_camera(client, rid, token, url="rtsp://camera.example.com/live?channel=1")
    assert cam["has_password"] is True
    assert "password" not in cam and "password_enc" not in cam
    assert cam["url"] == "rtsp://camera.example.com:554/live?channel=1"
    assert cam["stream"] == {
        "scheme": "rtsp",
        "host": "camera.example.com",
        "port": 554,
        "path": "/live?channel=1",
    }
    assert cam["username"] == "viewer" and cam["transport"] == "tcp" and cam["enabled"] is True

    listed = await client.get(f"/api/v1/restaurants/{rid}/cameras", headers=bearer(token))
    assert [c["id"] for c in (await listed.json())["cameras"]] == [cam["id"]]

    patched = await client.patch(
        f"/api/v1/cameras/{cam['id']}",
        json={"enabled": False, "transport": "udp", "password": None},
        headers=bearer(token),
    )
    body = await patched.json()
    assert patched.status == 200, body
    assert body["enabled"] is False and body["transport"] == "udp"
    assert body["has_password"] is False

    deleted = await client.delete(f"/api/v1/cameras/{cam['id']}", headers=bearer(token))
    assert deleted.status == 204
    gone = await client.get(f"/api/v1/cameras/{cam['id']}", headers=bearer(token))
    assert gone.status == 404


async def test_password_left_out_of_an_update_is_kept(client: TestClient) -> None:
    rid, token = await register(client)
    cam = await add_camera(client, rid, token)
    resp = await client.patch(
        f"/api/v1/cameras/{cam['id']}", json={"name": "Pass"}, headers=bearer(token)
    )
    assert (await resp.json())["has_password"] is True


async def test_validation_errors_name_the_field(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/restaurants", json=restaurant_body(name="", licence_number="x", colour="red")
    )
    assert resp.status == 422
    fields = {f["field"]: f["message"] for f in (await resp.json())["error"]["fields"]}
    assert set(fields) == {"name", "licence_number", "colour"}
    assert "remove it" in fields["colour"]

    rid, token = await register(client)
    resp = await client.post(
        f"/api/v1/restaurants/{rid}/cameras",
        json=camera_body(transport="carrier-pigeon", name="a\nb"),
        headers=bearer(token),
    )
    assert resp.status == 422
    fields = {f["field"]: f["message"] for f in (await resp.json())["error"]["fields"]}
    assert set(fields) == {"transport", "name"}
    assert "control characters" in fields["name"]


async def test_status_codes_for_bad_requests(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/restaurants", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["error"]["detail"]

    resp = await client.post("/api/v1/restaurants", json=[1, 2])
    assert resp.status == 400

    resp = await client.post("/api/v1/restaurants", data="name=x")
    assert resp.status == 415
    assert "application/json" in (await resp.json())["error"]["detail"]

    big = restaurant_body(address="x" * 70_000)
    resp = await client.post("/api/v1/restaurants", json=big)
    assert resp.status == 413
    assert "bytes allowed" in (await resp.json())["error"]["detail"]

    resp = await client.get("/api/v1/cameras")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")

    resp = await client.get("/api/v1/cameras", headers=bearer("kcr_forged"))
    assert resp.status == 401

    _, token = await register(client)
    resp = await client.get("/api/v1/cameras/0000000000000000", headers=bearer(token))
    assert resp.status == 404
    assert resp.content_type == "application/json"

    resp = await client.get("/api/v1/cameras?limit=abc", headers=bearer(token))
    assert resp.status == 400


async def test_duplicate_licence_is_a_conflict(client: TestClient) -> None:
    await register(client, licence_number="SH-0042")
    resp = await client.post("/api/v1/restaurants", json=restaurant_body(licence_number="sh-0042"))
    assert resp.status == 409
    assert "already registered" in (await resp.json())["error"]["detail"]


async def test_passwords_with_at_and_colon_are_kept_exactly(client: TestClient) -> None:
    rid, token = await register(client)
    cam = await add_camera(client, rid, token, username="ad@min", password="p@ss:w0rd/?#%")
    from kitchencam import appkeys

    registry = client.app[appkeys.REGISTRY]
    stored = await registry.get_camera(cam["id"])
    assert registry.camera_password(stored) == "p@ss:w0rd/?#%"
    assert stored.username == "ad@min"
    resp = await client.post(
        f"/api/v1/restaurants/{rid}/cameras",
        json=camera_body(username="ad:min"),
        headers=bearer(token),
    )
    assert resp.status == 422
    assert "cannot contain ':'" in (await resp.json())["error"]["fields"][0]["message"]


async def test_unknown_route_is_json_404(client: TestClient) -> None:
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["status"] == 404
