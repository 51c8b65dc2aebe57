"""Who may do what, route by route: every route of the app, tried as an anonymous browser,
restaurant A (which owns the ids in the paths), restaurant B, and a regulator, over plain HTTP
against the running server. Each actor signed in through the forms (restaurants signed up) and
sends its session cookie, plus its API token on ``/api/``; every form carries the actor's own
CSRF token, so a refusal comes from who the actor is, never from a missing token.

A cell succeeds with a 2xx or a redirect other than "sign in first" (``/signin?next=``); it is
refused with 401, 403, 404 or that redirect. Anything else (a 4xx for a bad request, a 5xx)
fails the cell whichever way it should have gone.

The same cells, sent as a forged cross-site form would be (the session cookie, no CSRF token),
are refused with 403 on every state-changing route.

The route list comes from the app's own router: a route without a row in ``MATRIX`` fails
``test_every_route_has_a_row``, so a new route cannot ship without saying who may use it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from playwright.async_api import Page

from kitchencam import appkeys
from kitchencam.app import create_app
from kitchencam.settings import load_settings
from tests.browser.support import REGULATOR, REGULATOR_PASSWORD, SIGNUP_PASSWORD, Server
from tests.helpers import camera_body, restaurant_body
from tests.support.camera import RtspCamera

ANON, A, B, REG = "anonymous", "restaurant A", "restaurant B", "regulator"
ROLES = (ANON, A, B, REG)
EVERYONE = frozenset(ROLES)
SIGNED_IN = frozenset({A, B, REG})
RESTAURANTS = frozenset({A, B})
OWNER = frozenset({A})
OWNER_OR_REGULATOR = frozenset({A, REG})
REGULATORS = frozenset({REG})

REFUSED = frozenset({401, 403, 404})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SIGN_IN_FIRST = "/signin?next="
SETUP_DEADLINE_S = 30.0
POLL_S = 0.2
CLOSED_CAMERA = "rtsp://127.0.0.1:9/live"  # loopback discard port: nothing ever answers
HOOK_URL = "http://127.0.0.1:9/hook"  # deliveries never leave the host
META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)"')
API_TOKEN = re.compile(r'id="api-token">\s*([^<\s]+)')


def parked_camera() -> dict[str, Any]:
    """A camera registration switched off, on a closed loopback port."""
    return camera_body(url=CLOSED_CAMERA, username=None, password=None, enabled=False)


def camera_form() -> dict[str, str]:
    """The portal's camera form, filled in (switched off: its checkbox left unticked)."""
    return {"name": "Cold room", "location": "walk-in", "url": CLOSED_CAMERA, "transport": "tcp"}


def signup_form() -> dict[str, str]:
    """The sign-up form of a new restaurant, filled in."""
    n = secrets.token_hex(4)  # licence numbers and e-mail addresses are unique
    return {
        "name": f"Matrix Kitchen {n}",
        "address": "1 Queen's Road",
        "district": "Central",
        "licence_number": f"JY-MATRIX-{n}",
        "contact": "+852 5555 0100",
        "email": f"matrix{n}@kitchen.example",
        "password": SIGNUP_PASSWORD,
        "password_again": SIGNUP_PASSWORD,
    }


@dataclass(frozen=True)
class Row:
    """Who may use one route, and what a request to it carries.

    ``fresh`` names what each cell needs of its own because the request uses it up or changes
    who the actor is: a ``camera`` of A, a ``restaurant`` standing in for A, a ``whep``
    session, a ``webhook`` to delete, an SDP ``offer``, or a whole new signed-in ``actor``;
    ``flagged`` uses A's offline camera and its event that raised the flag (only such events
    can be acknowledged)."""

    allowed: frozenset[str]
    json: Callable[[], dict[str, Any]] | None = None
    form: Callable[[], dict[str, str]] | None = None
    content_type: str | None = None
    body: str | None = None
    fresh: str | None = None


MATRIX: dict[tuple[str, str], Row] = {
    # operations
    ("GET", "/healthz"): Row(EVERYONE),
    ("GET", "/metrics"): Row(EVERYONE),
    ("GET", "/static"): Row(EVERYONE),
    ("GET", "/favicon.ico"): Row(EVERYONE),
    # the JSON API
    ("GET", "/api/v1/me"): Row(SIGNED_IN),
    ("POST", "/api/v1/restaurants"): Row(EVERYONE, json=restaurant_body),
    ("GET", "/api/v1/restaurants"): Row(SIGNED_IN),
    ("GET", "/api/v1/restaurants/{rid}"): Row(OWNER_OR_REGULATOR),
    ("PATCH", "/api/v1/restaurants/{rid}"): Row(OWNER, json=lambda: {"contact": "+852 5555 0199"}),
    ("DELETE", "/api/v1/restaurants/{rid}"): Row(OWNER, fresh="restaurant"),
    ("GET", "/api/v1/restaurants/{rid}/cameras"): Row(OWNER_OR_REGULATOR),
    ("POST", "/api/v1/restaurants/{rid}/cameras"): Row(OWNER, json=parked_camera),
    ("GET", "/api/v1/cameras"): Row(SIGNED_IN),
    ("GET", "/api/v1/cameras/{cid}"): Row(OWNER_OR_REGULATOR),
    ("PATCH", "/api/v1/cameras/{cid}"): Row(OWNER, json=lambda: {"location": "by the grill"}),
    ("DELETE", "/api/v1/cameras/{cid}"): Row(OWNER, fresh="camera"),
    ("GET", "/api/v1/states"): Row(SIGNED_IN),
    ("GET", "/api/v1/cameras/{cid}/state"): Row(OWNER_OR_REGULATOR),
    ("GET", "/api/v1/events"): Row(SIGNED_IN),
    ("GET", "/api/v1/events/{eid}"): Row(OWNER_OR_REGULATOR),
    ("GET", "/api/v1/snapshots/{sha}"): Row(OWNER_OR_REGULATOR),
    ("GET", "/api/v1/cameras/{cid}/preview"): Row(OWNER_OR_REGULATOR),
    ("GET", "/api/v1/cameras/{cid}/reference"): Row(OWNER_OR_REGULATOR),
    ("POST", "/api/v1/cameras/{cid}/reference"): Row(OWNER_OR_REGULATOR, json=dict),
    ("PUT", "/api/v1/restaurants/{rid}/webhook"): Row(OWNER, json=lambda: {"url": HOOK_URL}),
    ("GET", "/api/v1/restaurants/{rid}/webhook"): Row(OWNER),
    ("DELETE", "/api/v1/restaurants/{rid}/webhook"): Row(OWNER, fresh="webhook"),
    ("GET", "/api/v1/restaurants/{rid}/webhook/deliveries"): Row(OWNER),
    ("POST", "/api/v1/probe"): Row(RESTAURANTS, json=lambda: {"url": CLOSED_CAMERA}),
    # playback (WHEP): anonymous by design; a session URL is its own capability
    ("POST", "/whep/{camera_id}"): Row(EVERYONE, content_type="application/sdp", fresh="offer"),
    ("OPTIONS", "/whep/{camera_id}"): Row(EVERYONE),
    ("OPTIONS", "/whep/{camera_id}/{session_id}"): Row(EVERYONE, fresh="whep"),
    ("DELETE", "/whep/{camera_id}/{session_id}"): Row(EVERYONE, fresh="whep"),
    ("PATCH", "/whep/{camera_id}/{session_id}"): Row(
        EVERYONE,
        content_type="application/trickle-ice-sdpfrag",
        body="a=end-of-candidates\r\n",
        fresh="whep",
    ),
    # signing in, up and out (anyone may; each cell in a browser of its own)
    ("GET", "/"): Row(EVERYONE),
    ("GET", "/signin"): Row(EVERYONE),
    ("POST", "/signin"): Row(EVERYONE, fresh="actor"),
    ("POST", "/signout"): Row(EVERYONE, form=dict, fresh="actor"),
    ("GET", "/signup"): Row(EVERYONE),
    ("POST", "/signup"): Row(EVERYONE, form=signup_form, fresh="actor"),
    # the consumer's pages: public
    ("GET", "/play/{camera_id}"): Row(EVERYONE),
    ("GET", "/r/{rid}"): Row(EVERYONE),
    ("GET", "/r/{rid}/status.json"): Row(EVERYONE),
    ("GET", "/r/{rid}/cameras/{cid}/last-good.jpg"): Row(EVERYONE),
    ("GET", "/r/{rid}/qr.{kind}"): Row(EVERYONE),
    # the restaurant portal: each restaurant its own; A's cameras are A's alone
    ("GET", "/portal"): Row(RESTAURANTS),
    ("POST", "/portal/cameras"): Row(RESTAURANTS, form=camera_form),
    ("GET", "/portal/cameras/{cid}"): Row(OWNER),
    ("POST", "/portal/cameras/{cid}"): Row(OWNER, form=camera_form, fresh="camera"),
    ("POST", "/portal/cameras/{cid}/enabled"): Row(
        OWNER, form=lambda: {"enabled": "0"}, fresh="camera"
    ),
    ("GET", "/portal/cameras/{cid}/delete"): Row(OWNER),
    ("POST", "/portal/cameras/{cid}/delete"): Row(OWNER, form=dict, fresh="camera"),
    ("GET", "/portal/cameras/{cid}/preview.jpg"): Row(OWNER),
    ("GET", "/portal/snapshots/{sha}.jpg"): Row(OWNER),
    ("POST", "/portal/cameras/{cid}/reference"): Row(OWNER, form=dict),
    ("POST", "/portal/probe"): Row(
        RESTAURANTS, form=lambda: {"url": CLOSED_CAMERA, "transport": "tcp"}
    ),
    ("GET", "/portal/webhook"): Row(RESTAURANTS),
    ("POST", "/portal/webhook"): Row(RESTAURANTS, form=lambda: {"url": HOOK_URL}),
    ("POST", "/portal/webhook/delete"): Row(RESTAURANTS, form=dict),
    # the regulators' board
    ("GET", "/board"): Row(REGULATORS),
    ("GET", "/board/stream"): Row(REGULATORS),
    ("GET", "/board/export.csv"): Row(REGULATORS),
    ("GET", "/board/events.csv"): Row(REGULATORS),
    ("GET", "/board/audit"): Row(REGULATORS),
    ("GET", "/board/cameras/{cid}"): Row(REGULATORS),
    ("POST", "/board/cameras/{cid}/events/{eid}/ack"): Row(
        REGULATORS, form=lambda: {"note": "Seen; called the restaurant."}, fresh="flagged"
    ),
    ("GET", "/board/snapshots/{sha}"): Row(REGULATORS),
    ("GET", "/board/cameras/{cid}/preview.jpg"): Row(REGULATORS),
    ("GET", "/board/cameras/{cid}/reference.jpg"): Row(REGULATORS),
}


async def app_routes(tmp: Path) -> set[tuple[str, str]]:
    """Every (method, path template) ``kitchencam serve`` answers, read from the router of
    the app the same factory builds (HEAD is checked through GET)."""
    settings = load_settings({}, data_dir=str(tmp / "data"), webrtc_addresses="127.0.0.1")
    app = create_app(settings, "redis://127.0.0.1:1/0")
    found = set()
    for route in app.router.routes():
        if route.method != "HEAD" and route.resource is not None:
            found.add((route.method, route.resource.canonical))
    await app[appkeys.REDIS].aclose()  # never connected: the app was not started
    return found


async def test_every_route_has_a_row(tmp_path: Path) -> None:
    routes = await app_routes(tmp_path)
    missing = sorted(routes - MATRIX.keys())
    stale = sorted(MATRIX.keys() - routes)
    assert not missing, f"routes without a row in MATRIX (say who may use them): {missing}"
    assert not stale, f"rows in MATRIX for routes that no longer exist: {stale}"


# -- the actors ------------------------------------------------------------------------------


@dataclass
class Actor:
    """One role's browser over HTTP: its cookies (its session), sign-in, API and CSRF tokens."""

    role: str
    http: aiohttp.ClientSession
    identity: str = ""
    password: str = ""
    token: str | None = None
    csrf: str = ""

    def headers(self, path: str) -> dict[str, str]:
        """The API token on ``/api/`` requests (pages go by the session cookie)."""
        if self.token is not None and path.startswith("/api/"):
            return {"Authorization": f"Bearer {self.token}"}
        return {}


def new_http() -> aiohttp.ClientSession:
    """A client that keeps cookies of 127.0.0.1 (aiohttp drops IP-address cookies by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def page_text(http: aiohttp.ClientSession, url: str) -> str:
    """A page's HTML, which must load."""
    async with http.get(url) as resp:
        assert resp.status == 200, f"{url}: {resp.status}"
        return await resp.text()


async def csrf_of(http: aiohttp.ClientSession, url: str) -> str:
    """The CSRF token a page gives this browser (its ``<meta name="csrf-token">``)."""
    found = META_CSRF.search(await page_text(http, url))
    assert found is not None and found.group(1), f"{url} has no CSRF token"
    return found.group(1)


async def post_form(actor: Actor, url: str, form: dict[str, str]) -> aiohttp.ClientResponse:
    """Post a form as the actor, with its CSRF token; the answer is read before returning."""
    data = {**form, "csrf_token": actor.csrf}
    async with actor.http.post(url, data=data, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def signed_up(server: Server, role: str) -> Actor:
    """A new restaurant, registered through the sign-up form: signed in, with its API token."""
    actor = Actor(role, new_http())
    actor.csrf = await csrf_of(actor.http, server.base + "/signup")
    form = signup_form()
    data = {**form, "csrf_token": actor.csrf}
    async with actor.http.post(server.base + "/signup", data=data) as resp:
        html = await resp.text()
        assert resp.status == 201, f"sign-up: {resp.status}"
    token = API_TOKEN.search(html)
    assert token is not None, "the welcome page shows no API token"
    actor.identity, actor.password, actor.token = form["email"], form["password"], token.group(1)
    actor.csrf = await csrf_of(actor.http, server.base + "/portal")
    return actor


async def signed_in(server: Server, role: str, identity: str, password: str) -> Actor:
    """A browser signed in through the sign-in form."""
    actor = Actor(role, new_http(), identity, password)
    actor.csrf = await csrf_of(actor.http, server.base + "/signin")
    form = {"identity": identity, "password": password}
    resp = await post_form(actor, server.base + "/signin", form)
    assert resp.status == 303, f"sign-in of {identity}: {resp.status}"
    actor.csrf = await csrf_of(actor.http, server.base + resp.headers["Location"])
    return actor


async def anonymous(server: Server) -> Actor:
    """A browser nobody signed in on, holding the anonymous CSRF cookie of the sign-in page."""
    actor = Actor(ANON, new_http())
    actor.csrf = await csrf_of(actor.http, server.base + "/signin")
    return actor


async def restaurant_id(server: Server, actor: Actor) -> str:
    """The id of the restaurant an actor's API token belongs to."""
    url = server.base + "/api/v1/me"
    async with actor.http.get(url, headers=actor.headers("/api/")) as resp:
        return str((await resp.json())["id"])


async def wait_for(probe: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll ``probe`` until it returns something truthy, with a deadline."""
    end = time.monotonic() + SETUP_DEADLINE_S
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"no {what} within {SETUP_DEADLINE_S}s")
        await asyncio.sleep(POLL_S)


@dataclass
class World:
    """The server, the actors, and the ids the path templates are filled with."""

    server: Server
    page: Page
    actors: dict[str, Actor]
    ids: dict[str, str] = field(default_factory=dict)

    async def api(self, actor: Actor, method: str, path: str, body: Any = None) -> Any:
        """A JSON API call that must succeed."""
        async with actor.http.request(
            method, self.server.base + path, json=body, headers=actor.headers("/api/")
        ) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json() if resp.status != 204 else None

    async def fresh_camera(self) -> str:
        """A new camera of A, switched off."""
        path = f"/api/v1/restaurants/{self.ids['rid']}/cameras"
        data = await self.api(self.actors[A], "POST", path, parked_camera())
        return str(data["id"])

    async def offer(self) -> str:
        """An SDP offer from the real browser (a receive-only video transceiver)."""
        sdp: str = await self.page.evaluate(
            """async () => {
              const pc = new RTCPeerConnection({ iceServers: [] });
              pc.addTransceiver("video", { direction: "recvonly" });
              const offer = await pc.createOffer();
              pc.close();
              return offer.sdp;
            }"""
        )
        return sdp

    async def whep_session(self) -> str:
        """A new WHEP session on A's live camera; returns its session id."""
        url = f"{self.server.base}/whep/{self.ids['camera_id']}"
        headers = {"Content-Type": "application/sdp"}
        async with self.actors[ANON].http.post(
            url, data=await self.offer(), headers=headers
        ) as resp:
            assert resp.status == 201, await resp.text()
            return resp.headers["Location"].rstrip("/").rsplit("/", 1)[1]

    async def twin(self, role: str) -> Actor:
        """Another browser of the same person as ``role`` (a session of its own)."""
        if role == ANON:
            return await anonymous(self.server)
        actor = self.actors[role]
        twin = await signed_in(self.server, role, actor.identity, actor.password)
        twin.token = actor.token
        return twin


@pytest_asyncio.fixture(loop_scope="session")
async def world(server: Server, camera: RtspCamera, page: Page) -> AsyncIterator[World]:
    """Restaurants A and B (signed up), the regulator (signed in), an anonymous browser; A owns
    a live camera with an event, a preview, a reference view and a webhook."""
    actors: dict[str, Actor] = {}
    world = World(server, page, actors)
    try:
        actors[ANON] = await anonymous(server)
        actors[A] = await signed_up(server, A)
        actors[B] = await signed_up(server, B)
        actors[REG] = await signed_in(server, REG, REGULATOR, REGULATOR_PASSWORD)
        actors[REG].token = server.regulator_token
        rid = await restaurant_id(server, actors[A])
        body = camera_body(url=camera.url, username=None, password=None)
        cam = await world.api(actors[A], "POST", f"/api/v1/restaurants/{rid}/cameras", body)
        cid = str(cam["id"])
        world.ids.update(rid=rid, cid=cid, camera_id=cid, kind="svg")
        await world.api(actors[A], "PUT", f"/api/v1/restaurants/{rid}/webhook", {"url": HOOK_URL})
        dead = camera_body(url=CLOSED_CAMERA, username=None, password=None)
        dead_cam = await world.api(actors[A], "POST", f"/api/v1/restaurants/{rid}/cameras", dead)
        dead_cid = str(dead_cam["id"])

        async def offline_event() -> dict[str, Any] | None:
            found = await world.api(actors[REG], "GET", f"/api/v1/events?camera={dead_cid}")
            return next((e for e in found["events"] if e["to_state"] == "offline"), None)

        async def events() -> list[dict[str, Any]]:
            found = await world.api(actors[REG], "GET", f"/api/v1/events?camera={cid}")
            return list(found["events"])

        async def a_preview() -> bool:
            url = f"{server.base}/api/v1/cameras/{cid}/preview"
            async with actors[A].http.get(url, headers=actors[A].headers("/api/")) as resp:
                return resp.status == 200

        event = (await wait_for(events, "compliance event of A's camera"))[0]
        await wait_for(a_preview, "preview picture of A's camera")
        reference = await world.api(actors[A], "POST", f"/api/v1/cameras/{cid}/reference", {})
        world.ids.update(eid=event["id"], sha=reference["snapshot"])
        flagged = await wait_for(offline_event, "offline event of A's unreachable camera")
        world.ids.update(flagged_cid=dead_cid, flagged_eid=flagged["id"])
        yield world
    finally:
        for actor in actors.values():
            await actor.http.close()


# -- the cells -------------------------------------------------------------------------------


def fill(template: str, ids: dict[str, str]) -> str:
    """A concrete path for ``template``; static files by one real file."""
    if template == "/static":
        return "/static/player.js"
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)


def verdict(status: int, location: str) -> str:
    """What an answer means for the matrix: ``allowed``, ``refused`` or an error."""
    if 300 <= status < 400:
        return "refused" if location.startswith(SIGN_IN_FIRST) else "allowed"
    if status < 300:
        return "allowed"
    if status in REFUSED:
        return "refused"
    return f"error {status}"


async def attempt(
    world: World, method: str, template: str, row: Row, role: str, *, forged: bool = False
) -> tuple[int, str]:
    """One cell: ``role`` tries the route; returns the status and the redirect target.
    ``forged``: as a cross-site form would, with the browser's cookies but without the CSRF
    token (nor an API token)."""
    actor = world.actors[role]
    ids = dict(world.ids)
    data: Any = row.body
    spare: Actor | None = None
    if row.fresh == "camera":
        ids["cid"] = await world.fresh_camera()
    elif row.fresh == "restaurant":
        spare = await signed_up(world.server, A)
        ids["rid"] = await restaurant_id(world.server, spare)
        if role == A:
            actor = spare
    elif row.fresh == "webhook":
        path = f"/api/v1/restaurants/{ids['rid']}/webhook"
        await world.api(world.actors[A], "PUT", path, {"url": HOOK_URL})
    elif row.fresh == "whep":
        ids["session_id"] = await world.whep_session()
    elif row.fresh == "offer":
        data = await world.offer()
    elif row.fresh == "actor":
        actor = spare = await world.twin(role)
    elif row.fresh == "flagged":
        ids.update(cid=ids["flagged_cid"], eid=ids["flagged_eid"])
    path = fill(template, ids)
    headers = {} if forged else actor.headers(path)
    if row.content_type is not None:
        headers["Content-Type"] = row.content_type
    form = row.form() if row.form is not None else None
    if (method, template) == ("POST", "/signin"):
        # Anyone may sign in: each with their own account, an anonymous browser as a regulator.
        creds = (
            (actor.identity, actor.password) if role != ANON else (REGULATOR, REGULATOR_PASSWORD)
        )
        form = {"identity": creds[0], "password": creds[1]}
    if form is not None:
        data = form if forged else {**form, "csrf_token": actor.csrf}
    json = row.json() if row.json is not None else None
    try:
        async with actor.http.request(
            method,
            world.server.base + path,
            json=json,
            data=data,
            headers=headers,
            allow_redirects=False,
        ) as resp:
            location = resp.headers.get("Location", "")
            if row.fresh == "offer" and resp.status == 201:
                # End the viewer session this cell started (a WHEP Location is its own URL).
                async with actor.http.delete(world.server.base + location) as ended:
                    assert ended.status == 200, f"DELETE {location}: {ended.status}"
            return resp.status, location
    finally:
        if spare is not None:
            await spare.http.close()


async def test_only_allowed_cells_succeed(world: World) -> None:
    wrong = []
    for (method, template), row in sorted(MATRIX.items()):
        for role in ROLES:
            got = verdict(*await attempt(world, method, template, row, role))
            expected = "allowed" if role in row.allowed else "refused"
            if got != expected:
                wrong.append(f"{method} {template} as {role}: {got}, expected {expected}")
    assert not wrong, "cells that went the wrong way:\n" + "\n".join(wrong)


async def test_no_state_changing_request_from_a_browser_passes_without_its_csrf_token(
    world: World,
) -> None:
    """Every state-changing route but WHEP's (anonymous by design), tried by someone allowed
    to use it, with their session cookie but without the CSRF token: 403, every time."""
    wrong = []
    for (method, template), row in sorted(MATRIX.items()):
        if method not in UNSAFE_METHODS or template.startswith("/whep/"):
            continue
        role = next(r for r in (A, B, REG, ANON) if r in row.allowed)
        status, _ = await attempt(world, method, template, row, role, forged=True)
        if status != 403:
            wrong.append(f"{method} {template} as {role} without CSRF token: {status}")
    assert not wrong, "requests that were not refused:\n" + "\n".join(wrong)
