"""The restaurant portal: the camera list, camera pages (state, preview, reference view,
events, edit, switch off, delete) and webhook settings. Sign-up is in ``kitchencam.signup``,
connection tests in ``kitchencam.probeviews``.

Thin views: they parse forms, call the same registry and compliance services as the JSON API
(so the validation and its messages are the same), and render. A restaurant sees only its own
cameras: another restaurant's camera answers 404, as if it did not exist.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from kitchencam import appkeys, keys, sessions
from kitchencam.addresses import AddressError, parse_stream_url
from kitchencam.auth import Principal
from kitchencam.compliance.records import CameraState
from kitchencam.compliance.service import ReferenceUnavailable
from kitchencam.compliance.states import State
from kitchencam.httperrors import ApiError
from kitchencam.models import Camera, CameraCreate, CameraUpdate
from kitchencam.pages import render
from kitchencam.portalforms import camera_input, field_errors, shown, text
from kitchencam.registry import Conflict, NotFound
from kitchencam.signin import see_other

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

EVENTS_SHOWN = 50
DELIVERIES_SHOWN = 20
NEW_CAMERA = {"name": "", "location": "", "url": "", "transport": "tcp", "enabled": True}


# -- helpers ----------------------------------------------------------------------------------


async def restaurant(request: web.Request) -> Principal:
    """The signed-in restaurant (else a redirect to sign in, or 403 for a regulator)."""
    return await sessions.require(request, "restaurant")


async def _own_camera(request: web.Request, who: Principal) -> Camera:
    """The camera in the path if it is the signed-in restaurant's; ``NotFound`` otherwise
    (someone else's camera looks exactly like a missing one)."""
    cid = request.match_info["cid"]
    camera = await request.app[appkeys.REGISTRY].get_camera(cid)
    if camera.restaurant_id != who.ident:
        raise NotFound(f"no camera {cid}")
    return camera


def _initial_state(camera: Camera) -> dict[str, Any]:
    state = State.UNMONITORED if camera.enabled else State.DISABLED
    return {"state": state.value, "since": camera.created_at, "cause": "", "detail": ""}


def _state_view(camera: Camera, state: CameraState | None) -> dict[str, Any]:
    if state is None:
        return _initial_state(camera)
    return {
        "state": state.state.value,
        "since": state.since,
        "cause": state.cause,
        "detail": state.detail,
    }


async def _has_previews(request: web.Request, cameras: list[Camera]) -> dict[str, bool]:
    if not cameras:
        return {}
    redis = request.app[appkeys.REDIS]
    async with redis.pipeline(transaction=False) as pipe:
        for camera in cameras:
            pipe.exists(keys.camera_preview(camera.id))
        found = await pipe.execute()
    return {c.id: bool(n) for c, n in zip(cameras, found, strict=True)}


def _address_error(err: AddressError, data: Mapping[str, object]) -> dict[str, str]:
    """Which field an address refusal belongs to (the API reports it as ``url``)."""
    message = str(err)
    substream = data.get("substream_url")
    if isinstance(substream, str) and substream and _mentions_host(message, substream):
        return {"substream_url": message}
    return {"url": message}


def _mentions_host(message: str, url: str) -> bool:
    try:
        return repr(parse_stream_url(url).host) in message
    except AddressError:
        return True


# -- the camera list --------------------------------------------------------------------------


async def _portal_page(
    request: web.Request,
    who: Principal,
    *,
    status: int = 200,
    values: Mapping[str, object] | None = None,
    errors: Mapping[str, str] | None = None,
) -> web.Response:
    registry = request.app[appkeys.REGISTRY]
    restaurant = await registry.get_restaurant(who.ident)
    cameras = await registry.list_cameras(who.ident)
    states = await request.app[appkeys.COMPLIANCE].store.states([c.id for c in cameras])
    previews = await _has_previews(request, cameras)
    rows = [
        {"camera": c, "preview": previews[c.id], **_state_view(c, states.get(c.id))}
        for c in cameras
    ]
    return await render(
        request,
        "portal.html",
        status=status,
        restaurant=restaurant,
        rows=rows,
        values=values or NEW_CAMERA,
        errors=errors or {},
        notice=request.query.get("notice", ""),
    )


@routes.get("/portal")
async def portal(request: web.Request) -> web.Response:
    """The restaurant's cameras with their states and previews, and the add-camera form."""
    who = await restaurant(request)
    return await _portal_page(request, who)


@routes.post("/portal/cameras")
async def add_camera(request: web.Request) -> web.Response:
    """Register a camera from the form (the API's validation and messages)."""
    who = await restaurant(request)
    data = camera_input(await request.post(), editing=False)
    try:
        camera = await request.app[appkeys.REGISTRY].create_camera(
            who.ident, CameraCreate.model_validate(data)
        )
    except ValidationError as err:
        errors = field_errors(err)
    except AddressError as err:
        errors = _address_error(err, data)
    except Conflict as err:
        errors = {"form": str(err)}
    else:
        request.app[appkeys.METRICS].registrations.labels("camera").inc()
        return see_other(f"/portal/cameras/{camera.id}?notice=added")
    return await _portal_page(request, who, status=422, values=shown(data), errors=errors)


# -- one camera -------------------------------------------------------------------------------


async def camera_page_response(
    request: web.Request,
    who: Principal,
    camera: Camera,
    *,
    status: int = 200,
    values: Mapping[str, object] | None = None,
    errors: Mapping[str, str] | None = None,
    probe: dict[str, Any] | None = None,
) -> web.Response:
    """The camera's page (with a connection test's result when ``probe`` is given)."""
    store = request.app[appkeys.COMPLIANCE].store
    state = await store.state(camera.id)
    reference = await store.reference(camera.id)
    preview = await store.preview(camera.id)
    now = time.time()
    events = await store.event_page(keys.camera_events(camera.id), None, 0.0, EVENTS_SHOWN)
    live_raw = await request.app[appkeys.REDIS].get(keys.live(camera.id))
    return await render(
        request,
        "portal_camera.html",
        status=status,
        camera=camera,
        has_password=camera.password_enc is not None,
        view=_state_view(camera, state),
        reference=reference,
        preview_at=preview[1] if preview else None,
        events=events,
        now=now,
        live=live_raw is not None,
        values=values or camera.model_dump(exclude={"password_enc"}),
        errors=errors or {},
        probe=probe,
        notice=request.query.get("notice", ""),
    )


@routes.get("/portal/cameras/{cid}")
async def camera_page(request: web.Request) -> web.Response:
    """One camera: state, preview, reference view, events, settings."""
    who = await restaurant(request)
    camera = await _own_camera(request, who)
    return await camera_page_response(request, who, camera)


@routes.post("/portal/cameras/{cid}")
async def edit_camera(request: web.Request) -> web.Response:
    """Change a camera's settings; an empty password keeps the stored one."""
    who = await restaurant(request)
    camera = await _own_camera(request, who)
    data = camera_input(await request.post(), editing=True)
    try:
        await request.app[appkeys.REGISTRY].update_camera(
            camera.id, CameraUpdate.model_validate(data)
        )
    except ValidationError as err:
        errors = field_errors(err)
    except AddressError as err:
        errors = _address_error(err, data)
    else:
        return see_other(f"/portal/cameras/{camera.id}?notice=saved")
    return await camera_page_response(
        request, who, camera, status=422, values=shown(data), errors=errors
    )


@routes.post("/portal/cameras/{cid}/enabled")
async def switch_camera(request: web.Request) -> web.Response:
    """Switch the camera on or off (``enabled`` 1 or 0)."""
    who = await restaurant(request)
    camera = await _own_camera(request, who)
    enabled = text(await request.post(), "enabled") == "1"
    await request.app[appkeys.REGISTRY].update_camera(camera.id, CameraUpdate(enabled=enabled))
    notice = "enabled" if enabled else "disabled"
    return see_other(f"/portal/cameras/{camera.id}?notice={notice}")


@routes.get("/portal/cameras/{cid}/delete")
async def confirm_delete(request: web.Request) -> web.Response:
    """Ask before deleting the camera."""
    who = await restaurant(request)
    camera = await _own_camera(request, who)
    return await render(request, "portal_delete.html", camera=camera)


@routes.post("/portal/cameras/{cid}/delete")
async def delete_camera(request: web.Request) -> web.Response:
    """Delete the camera."""
    who = await restaurant(request)
    camera = await _own_camera(request, who)
    await request.app[appkeys.REGISTRY].delete_camera(camera.id)
    return see_other("/portal?notice=deleted")


@routes.get("/portal/cameras/{cid}/preview.jpg")
async def preview_jpeg(request: web.Request) -> web.Response:
    """The camera's latest preview picture."""
    who = await restaurant(request)
    camera = await _own_camera(request, who)
    preview = await request.app[appkeys.COMPLIANCE].store.preview(camera.id)
    if preview is None:
        raise NotFound("no recent picture of this camera")
    return web.Response(
        body=preview[0].data, content_type="image/jpeg", headers={"Cache-Control": "no-store"}
    )


@routes.get("/portal/snapshots/{sha}.jpg")
async def snapshot_jpeg(request: web.Request) -> web.Response:
    """A stored picture (reference view or evidence) of one of the restaurant's cameras."""
    who = await restaurant(request)
    snap = await request.app[appkeys.COMPLIANCE].store.snapshot(request.match_info["sha"])
    if snap is None or snap.restaurant_id != who.ident:
        raise NotFound("no such picture (or it is older than the retention time)")
    return web.Response(
        body=snap.jpeg,
        content_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


@routes.post("/portal/cameras/{cid}/reference")
async def approve_reference(request: web.Request) -> web.Response:
    """Approve the current preview (or a stored picture of the camera) as its reference view."""
    who = await restaurant(request)
    camera = await _own_camera(request, who)
    sha = text(await request.post(), "snapshot")
    try:
        await request.app[appkeys.COMPLIANCE].approve_reference(
            camera, sha, f"restaurant:{who.ident}"
        )
    except ReferenceUnavailable as err:
        raise ApiError(err.status, str(err)) from None
    return see_other(f"/portal/cameras/{camera.id}?notice=reference")


# -- webhook ----------------------------------------------------------------------------------


async def _webhook_page(
    request: web.Request,
    who: Principal,
    *,
    status: int = 200,
    secret: str | None = None,
    error: str | None = None,
    url: str = "",
) -> web.Response:
    webhooks = request.app[appkeys.COMPLIANCE].webhooks
    hook = await webhooks.get(who.ident)
    deliveries = await webhooks.log(who.ident, DELIVERIES_SHOWN)
    return await render(
        request,
        "portal_webhook.html",
        status=status,
        hook=hook,
        secret=secret,
        error=error,
        url=url or (hook.url if hook else ""),
        deliveries=deliveries,
    )


@routes.get("/portal/webhook")
async def webhook_page(request: web.Request) -> web.Response:
    """The webhook's address, the latest deliveries, and forms to set or remove it."""
    who = await restaurant(request)
    return await _webhook_page(request, who)


@routes.post("/portal/webhook")
async def set_webhook(request: web.Request) -> web.Response:
    """Set the webhook address; the new signing secret is shown this once."""
    who = await restaurant(request)
    url = text(await request.post(), "url").strip()
    try:
        if len(url) > 2048:
            raise AddressError("the address is too long (2048 characters at most)")
        _, secret = await request.app[appkeys.COMPLIANCE].webhooks.set(who.ident, url)
    except AddressError as err:
        return await _webhook_page(request, who, status=422, error=str(err), url=url)
    return await _webhook_page(request, who, status=201, secret=secret)


@routes.post("/portal/webhook/delete")
async def delete_webhook(request: web.Request) -> web.Response:
    """Remove the webhook."""
    who = await restaurant(request)
    await request.app[appkeys.COMPLIANCE].webhooks.remove(who.ident)
    return see_other("/portal/webhook")
