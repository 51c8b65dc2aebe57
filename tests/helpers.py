"""Small helpers for API tests: register restaurants and cameras through the real API."""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp.test_utils import TestClient

_licences = itertools.count(1000)


def restaurant_body(**overrides: Any) -> dict[str, Any]:
    """A valid restaurant registration."""
    body = {
        "name": "Golden Wok",
        "address": "12 Harbour Road",
        "district": "Wan Chai",
        "licence_number": f"JY{next(_licences):010d}",
        "contact": "+852 5555 0100",
    }
    body.update(overrides)
    return body


def camera_body(**overrides: Any) -> dict[str, Any]:
    """A valid camera registration (a public address: the tests never connect to it)."""
    body = {
        "name": "Wok line",
        "location": "hot kitchen, above the woks",
        "url": "rtsp://camera.example.com:554/Streaming/Channels/101",
        "username": "viewer",
        "password": "s3cret@with:colon",
    }
    body.update(overrides)
    return body


async def register(client: TestClient, **overrides: Any) -> tuple[str, str]:
    """Register a restaurant; return its id and token."""
    resp = await client.post("/api/v1/restaurants", json=restaurant_body(**overrides))
    assert resp.status == 201, await resp.text()
    data = await resp.json()
    return data["restaurant"]["id"], data["token"]


def bearer(token: str) -> dict[str, str]:
    """Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


async def add_camera(client: TestClient, rid: str, token: str, **overrides: Any) -> dict[str, Any]:
    """Register a camera; return its JSON."""
    resp = await client.post(
        f"/api/v1/restaurants/{rid}/cameras", json=camera_body(**overrides), headers=bearer(token)
    )
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data
