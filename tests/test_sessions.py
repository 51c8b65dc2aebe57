"""Sessions, CSRF, sign-in rate limits and error pages, through the real app and real Redis."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from kitchencam import accounts, keys, sessions
from kitchencam.sessions import safe_next
from tests.browsing import (
    REGULATOR_PASSWORD,
    add_regulator,
    csrf_from,
    post_form,
    sign_in,
    token_for,
)
from tests.conftest import AppFactory
from tests.helpers import bearer, camera_body, register


def _set_cookie(resp: Any, name: str) -> str:
    headers = [h for h in resp.headers.getall("Set-Cookie", []) if h.startswith(name + "=")]
    assert headers, f"no {name} cookie set"
    return str(headers[-1])


async def _redis_keys(redis_url: str, pattern: str) -> list[str]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return sorted(str(k) for k in await client.keys(pattern))
    finally:
        await client.aclose()


async def test_regulator_signs_in_with_a_session_in_redis_and_signs_out(
    client: TestClient, redis_url: str
) -> None:
    name = await add_regulator(client)
    resp = await sign_in(client, name, REGULATOR_PASSWORD)
    assert resp.status == 303
    assert resp.headers["Location"] == "/board"
    cookie = _set_cookie(resp, "kc_session")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http: browsers would drop a Secure cookie
    value = client.session.cookie_jar.filter_cookies(client.make_url("/"))["kc_session"].value
    digest = hashlib.sha256(value.encode()).hexdigest()
    assert await _redis_keys(redis_url, "kc:session:*") == [keys.session(digest)]
    assert 0 < await _ttl(redis_url, keys.session(digest)) <= sessions.SESSION_IDLE_S

    page = await client.get("/signin")
    html = await page.text()
    assert "Sign out" in html and name in html
    resp = await post_form(client, "/signout", {}, token_page="/signin")
    assert resp.status == 303
    assert await _redis_keys(redis_url, "kc:session:*") == []
    assert "Sign out" not in await (await client.get("/signin")).text()


async def _ttl(redis_url: str, key: str) -> int:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return int(await client.ttl(key))
    finally:
        await client.aclose()


async def test_a_session_ends_at_its_maximum_age(client: TestClient, redis_url: str) -> None:
    name = await add_regulator(client)
    await sign_in(client, name, REGULATOR_PASSWORD)
    assert "Sign out" in await (await client.get("/signin")).text()
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        (key,) = await redis.keys("kc:session:*")
        raw = await redis.get(key)
        assert raw is not None
        record = json.loads(raw)
        record["t"] -= sessions.SESSION_MAX_AGE_S + 1
        await redis.set(key, json.dumps(record), keepttl=True)
        assert "Sign out" not in await (await client.get("/signin")).text()
        assert await redis.exists(key) == 0
    finally:
        await redis.aclose()


async def test_cookies_are_secure_behind_a_trusted_https_proxy(
    aiohttp_client: Callable[..., Any], make_app: AppFactory
) -> None:
    client = await aiohttp_client(make_app(trust_proxy=True))
    name = await add_regulator(client)
    https = {"X-Forwarded-Proto": "https"}
    page = await client.get("/signin", headers=https)
    assert "Secure" in _set_cookie(page, "kc_csrf")
    token = csrf_from(await page.text())
    form = {"identity": name, "password": REGULATOR_PASSWORD, "csrf_token": token}
    # The client's jar (rightly) keeps a Secure cookie to itself over http: send it by hand.
    headers = {**https, "Cookie": f"kc_csrf={token}"}
    resp = await client.post("/signin", data=form, headers=headers, allow_redirects=False)
    assert resp.status == 303
    assert "Secure" in _set_cookie(resp, "kc_session")


async def test_untrusted_forwarded_proto_does_not_make_cookies_secure(client: TestClient) -> None:
    page = await client.get("/signin", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in _set_cookie(page, "kc_csrf")


async def test_form_posts_without_or_with_a_wrong_csrf_token_are_refused(
    client: TestClient,
) -> None:
    name = await add_regulator(client)
    await token_for(client)  # the anonymous token's cookie
    form = {"identity": name, "password": REGULATOR_PASSWORD}
    for data in (form, {**form, "csrf_token": "forged"}):
        resp = await client.post("/signin", data=data, allow_redirects=False)
        assert resp.status == 403
        assert resp.content_type == "text/html"
        assert "reload the page" in await resp.text()
    assert (await sign_in(client, name, REGULATOR_PASSWORD)).status == 303
    # Signed in, the session's own token is needed: the anonymous one no longer counts.
    anonymous = client.session.cookie_jar.filter_cookies(client.make_url("/"))["kc_csrf"].value
    resp = await client.post("/signout", data={"csrf_token": anonymous}, allow_redirects=False)
    assert resp.status == 403
    resp = await client.post(
        "/signout", headers={"X-CSRF-Token": await token_for(client)}, allow_redirects=False
    )
    assert resp.status == 303


async def test_session_cookie_api_calls_need_the_header_but_bearer_calls_do_not(
    client: TestClient,
) -> None:
    rid, api_token = await register(client)
    name = await add_regulator(client)
    assert (await sign_in(client, name, REGULATOR_PASSWORD)).status == 303
    # The browser now carries a session cookie; a Bearer call is still not checked.
    resp = await client.post(
        f"/api/v1/restaurants/{rid}/cameras", json=camera_body(), headers=bearer(api_token)
    )
    assert resp.status == 201
    resp = await client.post("/api/v1/probe", json={"url": "rtsp://camera.example.com/x"})
    assert resp.status == 403
    body = await resp.json()
    assert "reload the page" in body["error"]["detail"]


async def test_sign_in_is_rate_limited_per_account(client: TestClient) -> None:
    name = await add_regulator(client)
    for _ in range(accounts.MAX_FAILS_PER_ACCOUNT):
        resp = await sign_in(client, name, "wrong password")
        assert resp.status == 401
        assert "do not match" in await resp.text()
    resp = await sign_in(client, name, REGULATOR_PASSWORD)  # right, but too late
    assert resp.status == 429
    wait = int(resp.headers["Retry-After"])
    assert 0 < wait <= accounts.FAIL_WINDOW_S
    assert "Try again in 15 minutes" in await resp.text()
    assert "kc_session" not in resp.cookies


async def test_sign_in_is_rate_limited_per_client_address(client: TestClient) -> None:
    for n in range(accounts.MAX_FAILS_PER_ADDRESS):
        assert (await sign_in(client, f"guess{n}", "wrong password")).status == 401
    name = await add_regulator(client)
    assert (await sign_in(client, name, REGULATOR_PASSWORD)).status == 429


async def test_pages_need_the_right_kind_of_account(client: TestClient) -> None:
    resp = await client.get("/portal?x=1", allow_redirects=False)
    assert resp.status == 303
    location = URL(resp.headers["Location"])
    assert (location.path, location.query["next"]) == ("/signin", "/portal?x=1")
    name = await add_regulator(client)
    resp = await post_form(
        client,
        "/signin",
        {"identity": name, "password": REGULATOR_PASSWORD, "next": "/portal?x=1"},
    )
    assert resp.headers["Location"] == "/portal?x=1"
    resp = await client.get("/portal")
    assert resp.status == 403
    assert resp.content_type == "text/html"
    assert "for restaurants" in await resp.text()


async def test_removing_the_account_ends_its_sessions(client: TestClient) -> None:
    name = await add_regulator(client)
    await sign_in(client, name, REGULATOR_PASSWORD)
    app = client.app
    assert app is not None
    from kitchencam import appkeys

    await app[appkeys.USERS].remove(name)
    assert "Sign out" not in await (await client.get("/signin")).text()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/portal", "/portal"),
        ("/portal/cameras/ab?x=1", "/portal/cameras/ab?x=1"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_next_targets_stay_on_the_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


async def test_error_pages_are_friendly_html_and_api_errors_stay_json(
    aiohttp_client: Callable[..., Any], make_app: AppFactory
) -> None:
    app = make_app()

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("connect to redis://db.internal.example:6379 failed")

    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    page = await client.get("/no/such/page")
    assert page.status == 404
    assert page.content_type == "text/html"
    assert "There is no page at this address" in await page.text()
    api = await client.get("/api/v1/no-such-thing")
    assert api.status == 404
    assert api.content_type == "application/json"
    broken = await client.get("/boom")
    assert broken.status == 500
    text = await broken.text()
    assert "Something went wrong on our side" in text
    assert "db.internal.example" not in text and "Traceback" not in text
