"""Helpers for page tests: act like a browser (cookies, CSRF tokens, form posts) against the
real app through aiohttp's test client."""

from __future__ import annotations

import html
import re
from typing import Any

from aiohttp.test_utils import TestClient

from kitchencam import appkeys
from tests.helpers import restaurant_body

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
REGULATOR_PASSWORD = "correct horse battery"
RESTAURANT_PASSWORD = "kitchen-password-1"


def csrf_from(page: str) -> str:
    """The CSRF token of the first form in ``page``."""
    found = _TOKEN.search(page)
    assert found is not None, "the page has no form with a csrf_token"
    return html.unescape(found.group(1))


async def token_for(client: TestClient, path: str = "/signin") -> str:
    """GET ``path`` (keeping its cookies) and return its forms' CSRF token."""
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return csrf_from(await resp.text())


async def post_form(
    client: TestClient, path: str, data: dict[str, Any], *, token_page: str | None = None
) -> Any:
    """POST ``data`` as a form with a CSRF token from ``token_page`` (default: ``path``);
    redirects are not followed."""
    token = await token_for(client, token_page or path)
    return await client.post(path, data={**data, "csrf_token": token}, allow_redirects=False)


async def add_regulator(client: TestClient, name: str = "inspector") -> str:
    """Create a regulator account; return its name."""
    app = client.app
    assert app is not None
    await app[appkeys.USERS].add(name, "regulator", REGULATOR_PASSWORD)
    return name


async def sign_in(client: TestClient, identity: str, password: str) -> Any:
    """Sign in through the form; return the (303) answer."""
    return await post_form(client, "/signin", {"identity": identity, "password": password})


async def sign_up(
    client: TestClient, email: str = "chef@golden-wok.example", **overrides: Any
) -> tuple[Any, str]:
    """Register a restaurant through ``/signup`` (signing this client in); return the answer
    and its HTML."""
    body = {
        **restaurant_body(),
        "email": email,
        "password": RESTAURANT_PASSWORD,
        "password_again": RESTAURANT_PASSWORD,
    }
    body.update(overrides)
    resp = await post_form(client, "/signup", body)
    return resp, await resp.text()
