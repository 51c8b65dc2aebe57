"""A restaurant's token reaches its own restaurant and cameras, and nobody else's."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.helpers import add_camera, bearer, camera_body, register


async def test_restaurant_a_cannot_read_or_change_restaurant_b(client: TestClient) -> None:
    rid_a, token_a = await register(client, name="A")
    rid_b, token_b = await register(client, name="B")
    cam_b = await add_camera(client, rid_b, token_b)
    a = bearer(token_a)

    denied = [
        await client.get(f"/api/v1/restaurants/{rid_b}", headers=a),
        await client.patch(f"/api/v1/restaurants/{rid_b}", json={"name": "x"}, headers=a),
        await client.delete(f"/api/v1/restaurants/{rid_b}", headers=a),
        await client.get(f"/api/v1/restaurants/{rid_b}/cameras", headers=a),
        await client.post(f"/api/v1/restaurants/{rid_b}/cameras", json=camera_body(), headers=a),
        await client.get(f"/api/v1/cameras/{cam_b['id']}", headers=a),
        await client.patch(f"/api/v1/cameras/{cam_b['id']}", json={"enabled": False}, headers=a),
        await client.delete(f"/api/v1/cameras/{cam_b['id']}", headers=a),
    ]
    assert [r.status for r in denied] == [403] * len(denied)

    # A's listings show only A.
    mine = await (await client.get("/api/v1/cameras", headers=a)).json()
    assert mine["cameras"] == []
    restaurants = await (await client.get("/api/v1/restaurants", headers=a)).json()
    assert [r["id"] for r in restaurants["restaurants"]] == [rid_a]

    # B is untouched.
    b = bearer(token_b)
    still = await (await client.get(f"/api/v1/cameras/{cam_b['id']}", headers=b)).json()
    assert still["enabled"] is True
    assert (await client.get(f"/api/v1/restaurants/{rid_b}", headers=b)).status == 200


async def test_regulator_reads_everything_but_only_switches_cameras(client: TestClient) -> None:
    from kitchencam import appkeys

    users = client.app[appkeys.USERS]
    _, reg_token = await users.add("inspector.li", "regulator", "correct horse battery")
    reg = bearer(reg_token)
    rid, token = await register(client)
    cam = await add_camera(client, rid, token)

    listed = await (await client.get("/api/v1/cameras", headers=reg)).json()
    assert [c["id"] for c in listed["cameras"]] == [cam["id"]]
    assert "username" not in listed["cameras"][0]  # credentials are the restaurant's alone
    assert (await client.get(f"/api/v1/restaurants/{rid}", headers=reg)).status == 200

    off = await client.patch(f"/api/v1/cameras/{cam['id']}", json={"enabled": False}, headers=reg)
    assert off.status == 200 and (await off.json())["enabled"] is False
    rename = await client.patch(f"/api/v1/cameras/{cam['id']}", json={"name": "x"}, headers=reg)
    assert rename.status == 403
    assert (await client.delete(f"/api/v1/cameras/{cam['id']}", headers=reg)).status == 403
