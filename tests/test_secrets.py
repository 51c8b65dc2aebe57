"""Camera passwords are write-only: no response, header or log line ever holds one."""

from __future__ import annotations

import logging
import re

import pytest
from aiohttp.test_utils import TestClient

from kitchencam import appkeys
from tests.helpers import bearer, camera_body, register

CANARY = "Canary-7f3a@:pw"
ROUTE_PARAM = re.compile(r"\{(\w+)\}")


async def test_canary_password_appears_nowhere(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rid, token = await register(client)
    _, other_token = await register(client)
    _, reg_token = await client.app[appkeys.USERS].add("auditor", "regulator", "long enough pw")
    created = await client.post(
        f"/api/v1/restaurants/{rid}/cameras",
        json=camera_body(password=CANARY),
        headers=bearer(token),
    )
    assert created.status == 201
    cid = (await created.json())["id"]
    # A rejected update carrying the canary must not echo it back either.
    too_long = await client.patch(
        f"/api/v1/cameras/{cid}", json={"password": CANARY * 40}, headers=bearer(token)
    )
    assert too_long.status == 422

    stored = await client.app[appkeys.REGISTRY].get_camera(cid)
    assert client.app[appkeys.REGISTRY].camera_password(stored) == CANARY

    ids = {
        "rid": rid,
        "cid": cid,
        "camera_id": cid,
        "eid": "0-0",
        "sha": "0" * 64,
        "kind": "svg",
        "session_id": "0" * 32,
    }
    seen = 0
    # Deletions last, so every other route still finds the records.
    routes = sorted(client.app.router.routes(), key=lambda r: r.method == "DELETE")
    for route in routes:
        info = route.resource.get_info() if route.resource else {}
        template = info.get("formatter") or info.get("path")
        if template is None or route.method == "HEAD":
            continue
        path = ROUTE_PARAM.sub(lambda m: ids[m.group(1)], template)
        for headers in ({}, bearer(token), bearer(other_token), bearer(reg_token)):
            body = None
            if route.method in ("POST", "PATCH", "PUT"):
                body = {"name": "renamed"} if route.method == "PATCH" else camera_body()
            resp = await client.request(route.method, path, json=body, headers=headers)
            text = await resp.text()
            assert resp.status < 500, (route.method, path, text)
            assert CANARY not in text, (route.method, path)
            assert all(CANARY not in v for v in resp.headers.values()), (route.method, path)
            seen += 1
    assert seen >= 40
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in (record.exc_text or "")


def test_log_redaction_scrubs_urls_and_parameters() -> None:
    from kitchencam.logs import redact

    assert (
        redact("open rtsp://admin:hunter2@203.0.113.7/live") == "open rtsp://***@203.0.113.7/live"
    )
    assert "hunter2" not in redact("GET /x?password=hunter2&a=1")
