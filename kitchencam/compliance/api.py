"""The compliance API under ``/api/v1``: states, events, snapshots, reference views, webhooks.

Thin views: parse, check who may see what (restaurants their own, regulators everything),
call the store, answer. Errors are mapped to HTTP in ``kitchencam.httperrors``.
"""

from __future__ import annotations

import time
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from kitchencam import appkeys, keys
from kitchencam.auth import Principal, principal, require_access
from kitchencam.compliance.records import CameraState, Event
from kitchencam.compliance.service import Compliance, ReferenceUnavailable
from kitchencam.compliance.states import State
from kitchencam.compliance.uptime import WINDOWS_S, Change, uptime
from kitchencam.httperrors import ApiError, read_json
from kitchencam.models import Camera

routes = web.RouteTableDef()
PREFIX: Final = "/api/v1"
MAX_LIMIT: Final = 500
SCAN_LIMIT: Final = 5000
"""Events looked at per page when filters leave most of them out (the page then ends early
with a cursor to go on from)."""


class WebhookSet(BaseModel):
    """A restaurant setting its webhook."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="https:// (or http://) address to POST to")


class ReferenceApprove(BaseModel):
    """Approve a reference view: a stored snapshot of the camera, or its current preview."""

    model_config = ConfigDict(extra="forbid")

    snapshot: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


def _compliance(request: web.Request) -> Compliance:
    return request.app[appkeys.COMPLIANCE]


def _float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a time in seconds since 1970 (a number)") from None


def _limit(request: web.Request, default: int = 100) -> int:
    try:
        limit = int(request.query.get("limit", str(default)))
    except ValueError:
        raise ApiError(400, "limit must be a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _state_filter(request: web.Request) -> State | None:
    raw = request.query.get("state")
    if not raw:
        return None
    try:
        return State(raw)
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise ApiError(400, f"state must be one of {names}") from None


async def _camera(request: web.Request, who: Principal, cid: str) -> Camera:
    camera = await request.app[appkeys.REGISTRY].get_camera(cid)
    require_access(who, camera.restaurant_id)
    return camera


def _state_view(camera: Camera, state: CameraState) -> dict[str, Any]:
    return state.public() | {"camera_name": camera.name, "location": camera.location}


# -- states ---------------------------------------------------------------------------------


@routes.get(PREFIX + "/states")
async def list_states(request: web.Request) -> web.Response:
    """Current states; filters ``restaurant``, ``district``, ``state``; ``offset``/``limit``."""
    who = await principal(request)
    registry = request.app[appkeys.REGISTRY]
    rid = request.query.get("restaurant") or None
    district = request.query.get("district") or None
    wanted = _state_filter(request)
    limit = _limit(request)
    try:
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        raise ApiError(400, "offset must be a whole number") from None
    if not who.is_regulator:
        if rid is not None and rid != who.ident:
            raise ApiError(403, "this token does not give access to that restaurant")
        rid = who.ident
    cameras = await (registry.list_cameras(rid) if rid else registry.all_cameras())
    states = await _compliance(request).store.states([c.id for c in cameras])
    districts: dict[str, str] = {}
    shown = []
    for camera in cameras:
        state = states.get(camera.id)
        if state is None:
            if camera.restaurant_id not in districts:
                districts[camera.restaurant_id] = (
                    await registry.get_restaurant(camera.restaurant_id)
                ).district
            state = CameraState.initial(camera, districts[camera.restaurant_id])
        if district is not None and state.district != district:
            continue
        if wanted is not None and state.state is not wanted:
            continue
        shown.append(_state_view(camera, state))
    return web.json_response(
        {"states": shown[offset : offset + limit], "total": len(shown), "time": time.time()}
    )


@routes.get(PREFIX + "/cameras/{cid}/state")
async def camera_state(request: web.Request) -> web.Response:
    """One camera's state, its uptime over 24 h, 7 d and 30 d, and its reference view."""
    who = await principal(request)
    camera = await _camera(request, who, request.match_info["cid"])
    store = _compliance(request).store
    state = await store.state(camera.id)
    if state is None:
        district = (
            await request.app[appkeys.REGISTRY].get_restaurant(camera.restaurant_id)
        ).district
        state = CameraState.initial(camera, district)
    now = time.time()
    window_events = await store.events_between(
        keys.camera_events(camera.id), now - max(WINDOWS_S.values()), now
    )
    changes = [Change(e.t, e.from_state, e.to_state) for e in window_events]
    uptimes = {
        name: uptime(
            changes, start=now - span, end=now, current=state.state, known_since=camera.created_at
        ).public()
        for name, span in WINDOWS_S.items()
    }
    reference = await store.reference(camera.id)
    body = _state_view(camera, state) | {
        "uptime": uptimes,
        "reference": None if reference is None else reference.public(),
    }
    return web.json_response(body)


# -- events ---------------------------------------------------------------------------------


def _cursor(raw: str | None) -> tuple[float, str] | None:
    if not raw:
        return None
    t, _, eid = raw.partition(",")
    try:
        return float(t), eid
    except ValueError:
        raise ApiError(400, "cursor must be the next_cursor of a previous page") from None


@routes.get(PREFIX + "/events")
async def list_events(request: web.Request) -> web.Response:
    """Events, newest first; filters ``camera``, ``restaurant``, ``district``, ``state`` (the
    state entered), ``since``/``until`` (seconds); ``limit`` and ``cursor`` page through."""
    who = await principal(request)
    store = _compliance(request).store
    cid = request.query.get("camera") or None
    rid = request.query.get("restaurant") or None
    district = request.query.get("district") or None
    wanted = _state_filter(request)
    since = _float(request, "since")
    until = _float(request, "until")
    limit = _limit(request)
    cursor = _cursor(request.query.get("cursor"))
    if cid is not None:
        camera = await _camera(request, who, cid)
        index = keys.camera_events(camera.id)
    elif rid is not None:
        require_access(who, rid)
        index = keys.restaurant_events(rid)
    elif not who.is_regulator:
        index = keys.restaurant_events(who.ident)
    else:
        index = keys.EVENTS
    if until is not None and (cursor is None or cursor[0] > until):
        cursor = (until, "\uffff")
    found: list[Event] = []
    scanned = 0
    while len(found) < limit and scanned < SCAN_LIMIT:
        batch = await store.event_page(index, cursor, since if since is not None else 0.0, 200)
        if not batch:
            cursor = None
            break
        for event in batch:
            scanned += 1
            cursor = (event.t, event.id)
            if rid is not None and event.restaurant_id != rid:
                continue
            if not who.is_regulator and event.restaurant_id != who.ident:
                continue
            if district is not None and event.district != district:
                continue
            if wanted is not None and event.to_state is not wanted:
                continue
            found.append(event)
            if len(found) == limit:
                break
    next_cursor = None if cursor is None else f"{cursor[0]!r},{cursor[1]}"
    return web.json_response({"events": [e.public() for e in found], "next_cursor": next_cursor})


@routes.get(PREFIX + "/events/{eid}")
async def get_event(request: web.Request) -> web.Response:
    """One event."""
    who = await principal(request)
    event = await _compliance(request).store.event(request.match_info["eid"])
    if event is None:
        raise ApiError(404, "no such event (or it is older than the retention time)")
    require_access(who, event.restaurant_id)
    return web.json_response(event.public())


# -- snapshots and reference views ------------------------------------------------------


def _jpeg(data: bytes) -> web.Response:
    return web.Response(
        body=data,
        content_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


@routes.get(PREFIX + "/snapshots/{sha}")
async def get_snapshot(request: web.Request) -> web.Response:
    """An evidence JPEG by its SHA-256 (restaurant: its own cameras'; regulator: all)."""
    who = await principal(request)
    snap = await _compliance(request).store.snapshot(request.match_info["sha"])
    if snap is None:
        raise ApiError(404, "no such snapshot (or it is older than the retention time)")
    require_access(who, snap.restaurant_id)
    return _jpeg(snap.jpeg)


@routes.get(PREFIX + "/cameras/{cid}/preview")
async def get_preview(request: web.Request) -> web.Response:
    """The camera's latest preview picture (refreshed every 10 minutes while analysed)."""
    who = await principal(request)
    camera = await _camera(request, who, request.match_info["cid"])
    preview = await _compliance(request).store.preview(camera.id)
    if preview is None:
        raise ApiError(404, "no recent picture of this camera")
    return web.Response(body=preview[0].data, content_type="image/jpeg")


@routes.get(PREFIX + "/cameras/{cid}/reference")
async def get_reference(request: web.Request) -> web.Response:
    """The camera's approved reference view (who approved it and when; the JPEG is at
    ``/api/v1/snapshots/{snapshot}``)."""
    who = await principal(request)
    camera = await _camera(request, who, request.match_info["cid"])
    reference = await _compliance(request).store.reference(camera.id)
    if reference is None:
        raise ApiError(404, "no reference view approved yet (approved once the picture is good)")
    return web.json_response(reference.public())


@routes.post(PREFIX + "/cameras/{cid}/reference")
async def approve_reference(request: web.Request) -> web.Response:
    """Approve a new reference view (the restaurant or a regulator): a snapshot of this
    camera (``{"snapshot": sha}``) or, without one, its current preview."""
    who = await principal(request)
    camera = await _camera(request, who, request.match_info["cid"])
    body = ReferenceApprove.model_validate(await read_json(request))
    by = f"{who.kind}:{who.ident}"
    try:
        reference = await _compliance(request).approve_reference(camera, body.snapshot, by)
    except ReferenceUnavailable as err:
        raise ApiError(err.status, str(err)) from None
    return web.json_response(reference.public(), status=201)


# -- webhooks -------------------------------------------------------------------------------


@routes.put(PREFIX + "/restaurants/{rid}/webhook")
async def set_webhook(request: web.Request) -> web.Response:
    """Set the restaurant's webhook URL; the answer holds the signing secret, shown once."""
    rid = request.match_info["rid"]
    require_access(await principal(request), rid, write=True)
    await request.app[appkeys.REGISTRY].get_restaurant(rid)
    body = WebhookSet.model_validate(await read_json(request))
    hook, secret = await _compliance(request).webhooks.set(rid, body.url)
    return web.json_response(hook.public() | {"secret": secret}, status=201)


@routes.get(PREFIX + "/restaurants/{rid}/webhook")
async def get_webhook(request: web.Request) -> web.Response:
    """The restaurant's webhook URL (never the secret)."""
    rid = request.match_info["rid"]
    require_access(await principal(request), rid, write=True)
    hook = await _compliance(request).webhooks.get(rid)
    if hook is None:
        raise ApiError(404, "no webhook set")
    return web.json_response(hook.public())


@routes.delete(PREFIX + "/restaurants/{rid}/webhook")
async def delete_webhook(request: web.Request) -> web.Response:
    """Remove the restaurant's webhook."""
    rid = request.match_info["rid"]
    require_access(await principal(request), rid, write=True)
    if not await _compliance(request).webhooks.remove(rid):
        raise ApiError(404, "no webhook set")
    return web.Response(status=204)


@routes.get(PREFIX + "/restaurants/{rid}/webhook/deliveries")
async def webhook_deliveries(request: web.Request) -> web.Response:
    """The latest delivery attempts, newest first."""
    rid = request.match_info["rid"]
    require_access(await principal(request), rid, write=True)
    attempts = await _compliance(request).webhooks.log(rid, _limit(request))
    return web.json_response({"attempts": attempts})
