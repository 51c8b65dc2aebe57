"""The consumer watch page of a restaurant (``/r/{restaurant_id}``): public, no sign-in.

It shows the restaurant's name and each enabled camera, live over WHEP while the camera is
fine, or a placeholder saying what is wrong and since when (with the camera's last good
picture) while it is not. ``/r/{rid}/status.json`` is what the page polls to switch between
the two without a reload; ``/r/{rid}/qr.svg`` (and ``.png``) is the page's QR code.

Everything here is public, so every answer is built from an allow-list of fields: names,
states, times and viewer counts; never a camera address, user name, cause text (it can name a
host), relay or token. Views are thin: the pure :func:`card` decides what a camera shows.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Final

import segno
from aiohttp import web

from kitchencam import appkeys, keys, pages, wording
from kitchencam.compliance.records import CameraState
from kitchencam.compliance.states import State
from kitchencam.models import Camera, Restaurant
from kitchencam.registry import NotFound
from kitchencam.shortcache import ShortCache

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

PAGE_MAX_AGE_S: Final = 10
"""Shared caches may keep the page this long: it is the same for everyone, and the status
poll corrects it at once."""
STATUS_MAX_AGE_S: Final = 2
"""...and the status answer this long, so a proxy in front absorbs a crowd of viewers."""
SNAPSHOT_MAX_AGE_S: Final = 60
QR_MAX_AGE_S: Final = 86400
STATUS_CACHE_S: Final = 1.0
"""Each web process reads a restaurant's states from Redis at most once a second, however
many viewers poll (see ``kitchencam.shortcache``)."""
POLL_INTERVAL_S: Final = 3.0
"""How often the page asks for states (with a little jitter in the browser)."""
QR_SCALE: Final = 8
QR_BORDER: Final = 4
_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

PLAYABLE: Final = frozenset({State.OK, State.UNMONITORED})
"""States in which the video is shown. ``unmonitored`` is the platform's fault (no relay
analyses the camera), never the restaurant's, so its kitchen is not hidden for it; a camera
no checker has judged yet plays too. The player itself still shows nothing as live until
pictures actually arrive, and says so when they stop."""


@dataclass(frozen=True, slots=True)
class Card:
    """What one camera shows on the watch page: public fields only."""

    id: str
    name: str
    location: str
    state: str
    """A compliance state, or ``connecting`` while its relay is not receiving video."""
    title: str
    note: str
    since: float | None
    playable: bool
    viewers: int | None
    snapshot: str | None
    """URL of the camera's last good picture, shown on the placeholder; ``None`` while it
    plays or has none."""

    @property
    def since_iso(self) -> str:
        """``since`` as an ISO 8601 UTC time (the page shows it in the viewer's local time)."""
        return _utc(self.since).isoformat() if self.since is not None else ""

    @property
    def since_text(self) -> str:
        """``since`` for people who run no JavaScript."""
        return pages.utc_text(self.since) if self.since is not None else ""

    def public(self) -> dict[str, Any]:
        """The card as JSON for the page and ``status.json``."""
        return {
            "id": self.id,
            "name": self.name,
            "location": self.location,
            "state": self.state,
            "title": self.title,
            "note": self.note,
            "since": self.since,
            "playable": self.playable,
            "viewers": self.viewers,
            "snapshot": self.snapshot,
            "whep": f"/whep/{self.id}",
        }


def _utc(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, datetime.UTC)


def card(
    camera: Camera,
    rid: str,
    state: CameraState | None,
    figures: dict[str, Any] | None,
    *,
    picture: bool = True,
) -> Card:
    """What ``camera`` shows, from its published state and its relay's figures (pure);
    ``picture``: whether it has a last good picture to show while it does not play."""
    figures = figures or {}
    viewers = figures.get("viewers")
    shown = state.state if state is not None else None
    ingest = figures.get("state")
    since: float | None
    if state is not None and state.state not in PLAYABLE:
        (title, note), kind, since = (
            wording.STATE_WORDS[state.state],
            state.state.value,
            state.since,
        )
        playable = False
    elif ingest is not None and ingest != "live":
        (title, note), kind = wording.CONNECTING_WORDS, "connecting"
        raw_since = figures.get("since")
        since = float(raw_since) if isinstance(raw_since, int | float) else None
        playable = False
    else:
        (title, note), kind = wording.STATE_WORDS[shown or State.OK], (shown or State.OK).value
        since = state.since if state is not None else None
        playable = True
    return Card(
        id=camera.id,
        name=camera.name,
        location=camera.location,
        state=kind,
        title=title,
        note=note,
        since=since,
        playable=playable,
        viewers=viewers if isinstance(viewers, int) else None,
        snapshot=None if playable or not picture else f"/r/{rid}/cameras/{camera.id}/last-good.jpg",
    )


def page_url(base: str, rid: str) -> str:
    """The absolute address of a restaurant's watch page under ``base``."""
    return f"{base.rstrip('/')}/r/{rid}"


def qr_code(url: str) -> segno.QRCode:
    """The QR code of ``url`` (error correction M: survives a smudged door sticker)."""
    return segno.make(url, error="m", micro=False)


# -- the shell ------------------------------------------------------------------------------


def setup(app: web.Application) -> None:
    """Give ``app`` the watch page routes and their short cache of camera states."""
    app[appkeys.WATCH_CACHE] = ShortCache(STATUS_CACHE_S)
    app.router.add_routes(routes)


def _rid(request: web.Request) -> str:
    rid = request.match_info["rid"]
    if not _ID.match(rid):
        raise NotFound(f"no restaurant {rid!r}")
    return rid


async def _restaurant(request: web.Request) -> Restaurant:
    return await request.app[appkeys.REGISTRY].get_restaurant(_rid(request))


async def _cards(request: web.Request, rid: str) -> list[Card]:
    cards: list[Card] = await request.app[appkeys.WATCH_CACHE].get(
        rid, lambda: _load_cards(request, rid)
    )
    return cards


async def _load_cards(request: web.Request, rid: str) -> list[Card]:
    cameras = [c for c in await request.app[appkeys.REGISTRY].list_cameras(rid) if c.enabled]
    if not cameras:
        return []
    ids = [c.id for c in cameras]
    states = await request.app[appkeys.COMPLIANCE].store.states(ids)
    raws = await request.app[appkeys.REDIS].mget([keys.live(cid) for cid in ids])
    cards = []
    for camera, raw in zip(cameras, raws, strict=True):
        try:
            figures = json.loads(raw) if raw else None
        except ValueError:
            figures = None
        state = states.get(camera.id)
        shown = card(camera, rid, state, figures)
        if not shown.playable and not await _has_last_good(request, camera.id, state):
            shown = card(camera, rid, state, figures, picture=False)
        cards.append(shown)
    return cards


async def _has_last_good(request: web.Request, cid: str, state: CameraState | None) -> bool:
    """Whether :func:`last_good` has a picture for the camera (without reading it)."""
    store = request.app[appkeys.COMPLIANCE].store
    if state is not None and state.last_event:
        event = await store.event(state.last_event)
        if event is not None and event.camera_id == cid and event.last_good:
            if await request.app[appkeys.REDIS].exists(keys.snapshot(event.last_good)):
                return True
    return await store.reference(cid) is not None


def _public_html(request: web.Request, name: str, status: int, **context: object) -> web.Response:
    """A page that is the same for everybody: no session, no form token, cacheable."""
    template = request.app[appkeys.TEMPLATES].get_template(name)
    html = template.render(static=pages.STATIC_PREFIX, who=None, csrf_token="", **context)
    response = web.Response(text=html, status=status, content_type="text/html")
    if status == 200:
        response.headers["Cache-Control"] = f"public, max-age={PAGE_MAX_AGE_S}"
    return response


def _base_url(request: web.Request) -> str:
    configured = request.app[appkeys.SETTINGS].public_url
    return configured if configured else f"{request.scheme}://{request.host}"


@routes.get("/r/{rid}")
async def watch_page(request: web.Request) -> web.Response:
    """A restaurant's kitchen, live."""
    try:
        restaurant = await _restaurant(request)
    except NotFound:
        return _public_html(request, "not_found.html", 404, what="restaurant")
    cards = await _cards(request, restaurant.id)
    return _public_html(
        request,
        "watch.html",
        200,
        restaurant=restaurant,
        cards=cards,
        data={
            "restaurant": {"id": restaurant.id, "name": restaurant.name},
            "cameras": [c.public() for c in cards],
            "status": f"/r/{restaurant.id}/status.json",
            "poll_s": POLL_INTERVAL_S,
        },
        qr=f"/r/{restaurant.id}/qr.svg",
    )


@routes.get("/r/{rid}/status.json")
async def watch_status(request: web.Request) -> web.Response:
    """Each enabled camera's state, since when, and viewers (what the page polls)."""
    try:
        restaurant = await _restaurant(request)
    except NotFound:
        return web.json_response({"error": "no such restaurant"}, status=404)
    cards = await _cards(request, restaurant.id)
    body = {
        "restaurant": {"id": restaurant.id, "name": restaurant.name},
        "cameras": [c.public() for c in cards],
        "t": round(time.time(), 3),
    }
    response = web.json_response(body)
    response.headers["Cache-Control"] = f"public, max-age={STATUS_MAX_AGE_S}"
    return response


@routes.get("/r/{rid}/cameras/{cid}/last-good.jpg")
async def last_good(request: web.Request) -> web.Response:
    """The last good picture of an enabled camera of this restaurant: the one its latest
    compliance event kept, else its approved reference view. Never any other picture."""
    rid = _rid(request)
    cid = request.match_info["cid"]
    if not _ID.match(cid):
        raise web.HTTPNotFound()
    try:
        camera = await request.app[appkeys.REGISTRY].get_camera(cid)
    except NotFound:
        raise web.HTTPNotFound() from None
    if camera.restaurant_id != rid or not camera.enabled:
        raise web.HTTPNotFound()
    jpeg, tag = await _last_good_jpeg(request, camera)
    if jpeg is None:
        raise web.HTTPNotFound()
    if request.headers.get("If-None-Match") == f'"{tag}"':
        return web.Response(status=304, headers={"ETag": f'"{tag}"'})
    return web.Response(
        body=jpeg,
        content_type="image/jpeg",
        headers={"Cache-Control": f"public, max-age={SNAPSHOT_MAX_AGE_S}", "ETag": f'"{tag}"'},
    )


async def _last_good_jpeg(request: web.Request, camera: Camera) -> tuple[bytes | None, str]:
    store = request.app[appkeys.COMPLIANCE].store
    state = await store.state(camera.id)
    if state is not None and state.last_event:
        event = await store.event(state.last_event)
        if event is not None and event.camera_id == camera.id and event.last_good:
            snap = await store.snapshot(event.last_good)
            if snap is not None and snap.camera_id == camera.id:
                return snap.jpeg, snap.sha256
    reference = await store.reference(camera.id)
    jpeg = await store.reference_jpeg(camera.id)
    if reference is not None and jpeg is not None:
        return jpeg, reference.snapshot
    return None, ""


@routes.get("/r/{rid}/qr.{kind:svg|png}")
async def qr(request: web.Request) -> web.Response:
    """The watch page's QR code, for the restaurant's door and delivery apps."""
    try:
        restaurant = await _restaurant(request)
    except NotFound:
        raise web.HTTPNotFound() from None
    url = page_url(_base_url(request), restaurant.id)
    kind = request.match_info["kind"]
    out = io.BytesIO()
    if kind == "svg":
        qr_code(url).save(
            out,
            kind="svg",
            scale=QR_SCALE,
            border=QR_BORDER,
            xmldecl=False,
            title=f"{restaurant.name}: {url}",
        )
        content_type = "image/svg+xml"
    else:
        qr_code(url).save(out, kind="png", scale=QR_SCALE, border=QR_BORDER)
        content_type = "image/png"
    # From a configured address the code is the same for everyone; from the Host header it
    # is only the asker's.
    scope = "public" if request.app[appkeys.SETTINGS].public_url else "private"
    return web.Response(
        body=out.getvalue(),
        content_type=content_type,
        headers={"Cache-Control": f"{scope}, max-age={QR_MAX_AGE_S}"},
    )
