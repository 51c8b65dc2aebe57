"""Connection tests of camera streams: ``POST /api/v1/probe`` (JSON, for the portal's script
and API clients) and ``POST /portal/probe`` (the same without JavaScript, as a page)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from kitchencam import appkeys, sessions
from kitchencam.addresses import AddressError
from kitchencam.auth import Principal, principal
from kitchencam.httperrors import ApiError, read_json
from kitchencam.models import Password, StreamUrl, Transport, Username
from kitchencam.pages import render
from kitchencam.portal import camera_page_response, restaurant
from kitchencam.portalforms import camera_input, field_errors, shown, text
from kitchencam.registry import NotFound
from kitchencam.relay.ingest import IngestError
from kitchencam.relay.probe import ProbeBusy, ProbeReport

routes = web.RouteTableDef()

PROBE_BUSY_RETRY_S = 5


class ProbeRequest(BaseModel):
    """What to test: an address with credentials, or a registered camera's (``camera``), with
    fields given overriding the stored ones (an empty password keeps the stored one)."""

    model_config = ConfigDict(extra="forbid")

    url: StreamUrl | None = None
    username: Username | None = None
    password: Password | None = None
    transport: Transport = "tcp"
    camera: str | None = None


async def _run_probe(request: web.Request, who: Principal, body: ProbeRequest) -> dict[str, Any]:
    """Probe and describe the outcome: ``{"reachable": bool, "report"?, "error"?}``."""
    url, username = body.url, body.username
    password = body.password.get_secret_value() if body.password else None
    if body.camera:
        registry = request.app[appkeys.REGISTRY]
        camera = await registry.get_camera(body.camera)
        if camera.restaurant_id != who.ident:
            raise NotFound(f"no camera {body.camera}")
        url = url or camera.url
        username = username if body.url else (username or camera.username)
        if not password:
            password = registry.camera_password(camera)
    if not url:
        raise ApiError(422, "enter the camera's stream address (rtsp://...)")
    try:
        report: ProbeReport = await request.app[appkeys.PROBER].probe(
            url, username, password, body.transport
        )
    except ProbeBusy as err:
        raise ApiError(503, str(err), headers={"Retry-After": str(PROBE_BUSY_RETRY_S)}) from None
    except IngestError as err:
        return {"reachable": False, "error": f"Could not read the stream: {err.detail}."}
    return {"reachable": True, "report": report.public()}


async def _api_caller(request: web.Request) -> Principal:
    """The API token's owner, or the browser session's (CSRF-checked by the middleware)."""
    if "Authorization" in request.headers:
        return await principal(request)
    who = await sessions.current(request)
    if who is None:
        return await principal(request)  # the 401 saying how to authenticate
    return who


@routes.post("/api/v1/probe")
async def probe_api(request: web.Request) -> web.Response:
    """Test a camera address (restaurants): codec, profile, resolution, frame rate, keyframe
    interval, B-frames, where SPS/PPS travel, and advice."""
    who = await _api_caller(request)
    if who.kind != "restaurant":
        raise ApiError(403, "connection tests are for restaurants")
    body = ProbeRequest.model_validate(await read_json(request))
    return web.json_response(await _run_probe(request, who, body))


@routes.post("/portal/probe")
async def probe_form(request: web.Request) -> web.Response:
    """The connection test without JavaScript: the result on the camera's page (or the camera
    list, for a camera not yet added), with the form's values kept (but not the password)."""
    who = await restaurant(request)
    form = await request.post()
    cid = text(form, "camera")
    data = camera_input(form, editing=bool(cid))
    fields = {k: data.get(k) for k in ("url", "username", "password", "transport")}
    result: dict[str, Any]
    try:
        body = ProbeRequest.model_validate(
            {**{k: v for k, v in fields.items() if v is not None}, "camera": cid or None}
        )
        result = await _run_probe(request, who, body)
    except ValidationError as err:
        result = {"reachable": False, "error": "; ".join(field_errors(err).values())}
    except AddressError as err:
        result = {"reachable": False, "error": str(err)}
    if cid:
        camera = await request.app[appkeys.REGISTRY].get_camera(cid)
        if camera.restaurant_id != who.ident:
            raise NotFound(f"no camera {cid}")
        return await camera_page_response(request, who, camera, values=shown(data), probe=result)
    return await render(request, "portal_probe.html", values=shown(data), probe=result)
