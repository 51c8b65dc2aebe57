"""WHEP playback (draft-ietf-wish-whep): ``POST /whep/{camera}`` with an SDP offer, a session
URL to ``DELETE`` (and ``PATCH`` with trickle ICE), CORS for players on other origins."""

from __future__ import annotations

import logging

from aiohttp import web
from multidict import CIMultiDict

from kitchencam import appkeys
from kitchencam.httperrors import ApiError
from kitchencam.registry import NotFound
from kitchencam.relay.webrtc import IceSettings, NotPlayable, OfferError

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_OFFER_BYTES = 64 * 1024
RETRY_AFTER_S = 2
SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, If-Match, Authorization",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Retry-After",
    "Access-Control-Max-Age": "600",
}


def link_headers(ice: IceSettings) -> list[str]:
    """``Link`` header values advertising the ICE servers (WHEP section 4.4)."""
    links = []
    for server in ice.servers:
        urls = server.urls if isinstance(server.urls, list) else [server.urls]
        for url in urls:
            value = f'<{url}>; rel="ice-server"'
            if server.username:
                value += f'; username="{server.username}"; credential="{server.credential}"'
                value += '; credential-type="password"'
            links.append(value)
    return links


def _headers(request: web.Request, **extra: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(CORS)
    for link in link_headers(request.app[appkeys.RELAY].ice):
        headers.add("Link", link)
    headers.update(extra)
    return headers


async def read_body(request: web.Request, content_type: str) -> str:
    """The request body as text, checked for type (415), size (413) and encoding (400)."""
    if request.content_type != content_type:
        raise ApiError(415, f"send the body with Content-Type: {content_type}")
    if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
        raise ApiError(413, f"the body is larger than {MAX_OFFER_BYTES} bytes")
    body = await request.content.read(MAX_OFFER_BYTES + 1)
    if len(body) > MAX_OFFER_BYTES:
        raise ApiError(413, f"the body is larger than {MAX_OFFER_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text") from None


def _unavailable(detail: str) -> ApiError:
    return ApiError(503, detail, headers={"Retry-After": str(RETRY_AFTER_S), **CORS})


@routes.post("/whep/{camera_id}")
async def play(request: web.Request) -> web.Response:
    """Answer a viewer's SDP offer with the camera's live video."""
    camera_id = request.match_info["camera_id"]
    offer = await read_body(request, SDP)
    try:
        camera = await request.app[appkeys.REGISTRY].get_camera(camera_id)
    except NotFound:
        raise ApiError(404, "no such camera", headers=CORS) from None
    if not camera.enabled:
        raise ApiError(409, "this camera is switched off by its restaurant", headers=CORS)
    relay = request.app[appkeys.RELAY]
    stream = relay.stream(camera_id)
    if stream is None or stream.info is None or stream.gop_units == 0:
        raise _unavailable("the camera is not live right now; try again shortly")
    full = relay.viewers.has_room(stream)
    if full:
        raise _unavailable(full)
    try:
        session, answer = await relay.viewers.open(stream, offer)
    except OfferError as err:
        raise ApiError(400, str(err), headers=CORS) from None
    except NotPlayable as err:
        raise ApiError(406, str(err), headers=CORS) from None
    location = f"/whep/{camera_id}/{session.id}"
    return web.Response(
        status=201,
        text=answer,
        content_type=SDP,
        headers=_headers(request, Location=location, ETag=session.etag),
    )


@routes.route("OPTIONS", "/whep/{camera_id}")
@routes.route("OPTIONS", "/whep/{camera_id}/{session_id}")
async def preflight(request: web.Request) -> web.Response:
    """CORS pre-flight; also tells what the endpoint accepts."""
    return web.Response(status=204, headers=_headers(request, **{"Accept-Post": SDP}))


@routes.delete("/whep/{camera_id}/{session_id}")
async def stop(request: web.Request) -> web.Response:
    """End a viewer's session."""
    relay = request.app[appkeys.RELAY]
    session = relay.viewers.get(request.match_info["session_id"])
    if session is None or session.camera_id != request.match_info["camera_id"]:
        raise ApiError(404, "no such session (it may have ended already)", headers=CORS)
    await relay.viewers.close(session.id, "ended by the viewer")
    return web.Response(status=200, headers=CORS)


@routes.patch("/whep/{camera_id}/{session_id}")
async def trickle(request: web.Request) -> web.Response:
    """Trickle ICE: add the viewer's late candidates (RFC 8840 SDP fragment)."""
    relay = request.app[appkeys.RELAY]
    session = relay.viewers.get(request.match_info["session_id"])
    if session is None or session.camera_id != request.match_info["camera_id"]:
        raise ApiError(404, "no such session (it may have ended already)", headers=CORS)
    if_match = request.headers.get("If-Match")
    if if_match is not None and if_match not in ("*", session.etag):
        raise ApiError(412, "the session's ETag differs (ICE restarts are not supported)")
    fragment = await read_body(request, TRICKLE)
    try:
        await relay.viewers.add_candidates(session, fragment)
    except OfferError as err:
        raise ApiError(400, str(err), headers=CORS) from None
    return web.Response(status=204, headers=CORS)
