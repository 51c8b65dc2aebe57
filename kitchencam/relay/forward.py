"""WHEP signalling in web processes: any web process takes any viewer, for any camera.

A viewer's WebRTC peer has to live in the relay process that pulls the camera, but the viewer
talks to whichever web process the load balancer picked. A web process therefore routes the
signalling (and only the signalling; media flows from the relay process to the viewer over
ICE) by **HTTP forwarding**:

- ``POST /whep/{camera}``: rate-limited per client address (``KITCHENCAM_WHEP_RATE_PER_MIN``,
  429 + ``Retry-After``); answered here when this process also runs the relay role and pulls
  the camera (or holds its lease); otherwise the offer goes to the relay holding the camera's
  lease (``leases.holder``: its advertised URL) as ``POST {relay url}/whep/{camera}``, and
  the relay's status, body and WHEP headers come back to the viewer. ``Location`` stays a path on
  this origin, so the browser only ever talks to one origin: no CORS pre-flight to the relay,
  no redirect, and the relay needs no public HTTP address.
- ``PATCH``/``DELETE`` of the session URL: answered here when the session lives here, else
  forwarded to the camera's current holder (a session on a relay that lost the camera has
  ended anyway: the new holder answers 404).
- No holder: 503 + ``Retry-After`` (the camera is not being pulled yet); unknown camera: 404;
  switched off: 409; holder unreachable: 503 + ``Retry-After``.
- Loops cannot happen: forwarded requests carry ``X-KitchenCam-Forwarded`` (a token derived
  from the shared password key, so viewers cannot forge it to skip the rate limit) and are
  never forwarded again, and relay-only processes serve ``kitchencam.relay.whep`` directly,
  which never forwards.

``X-Forwarded-For`` tells the relay's logs who the viewer is. Counters of forwarded and
refused requests are in ``/metrics`` (``kitchencam_whep_forwarded_total``,
``kitchencam_whep_refused_total``).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from kitchencam import appkeys
from kitchencam.httperrors import ApiError
from kitchencam.ratelimit import retry_after_s
from kitchencam.registry import NotFound
from kitchencam.relay import leases, whep
from kitchencam.relay.forwarder import RelayUnreachable
from kitchencam.sessions import client_ip

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

RETRY_AFTER_S = 2
NO_SESSION = "no such session (it may have ended already)"


def _unavailable(detail: str) -> ApiError:
    return ApiError(503, detail, headers={"Retry-After": str(RETRY_AFTER_S), **whep.CORS})


def _forwarded(request: web.Request) -> bool:
    return request.app[appkeys.FORWARDER].is_forwarded(request.headers)


def _limit(request: web.Request) -> None:
    forwarder = request.app[appkeys.FORWARDER]
    wait_s = forwarder.limiter.take(client_ip(request), time.monotonic())
    if wait_s > 0:
        forwarder.metrics.refused.labels("rate_limited").inc()
        retry = retry_after_s(wait_s)
        raise ApiError(
            429,
            f"too many viewers started from your address; try again in {retry} s",
            headers={"Retry-After": str(retry), **whep.CORS},
        )


def _relay_url(base: str, request: web.Request) -> str:
    """The same WHEP resource on the relay at ``base``."""
    segments = ["whep", request.match_info["camera_id"]]
    if "session_id" in request.match_info:
        segments.append(request.match_info["session_id"])
    return str(URL(base.rstrip("/")).joinpath(*segments))


def _own(request: web.Request, holder: leases.Holder | None) -> bool:
    """Whether ``holder`` is this very process's relay role."""
    return (
        holder is not None
        and appkeys.RELAY in request.app
        and holder.relay_id == request.app[appkeys.ROLES].instance
    )


async def _forward(request: web.Request, holder: leases.Holder, body: str | None) -> web.Response:
    """Forward the request to ``holder`` and answer with what it says."""
    if holder.url is None:
        raise _unavailable("the relay pulling this camera has not said where it answers yet")
    try:
        answer = await request.app[appkeys.FORWARDER].send(
            request.method,
            _relay_url(holder.url, request),
            body.encode() if body is not None else None,
            request.headers,
            request.remote,
        )
    except RelayUnreachable as err:
        # A dead relay keeps its leases until they expire: warn once per relay and interval,
        # not once per viewer request.
        quiet = not request.app[appkeys.FORWARDER].should_warn(holder.relay_id, time.monotonic())
        (log.debug if quiet else log.warning)(
            "camera %s: relay %s does not answer %s (%s)",
            request.match_info["camera_id"],
            holder.relay_id,
            request.method,
            err,
        )
        raise _unavailable(
            "the relay pulling this camera does not answer; try again shortly"
        ) from None
    headers: CIMultiDict[str] = CIMultiDict(whep.CORS)
    headers.extend(answer.headers)
    return web.Response(status=answer.status, body=answer.body, headers=headers)


@routes.post("/whep/{camera_id}")
async def play(request: web.Request) -> web.StreamResponse:
    """A viewer's SDP offer: answered by this process's relay or by the camera's holder."""
    forwarded = _forwarded(request)
    if not forwarded:
        _limit(request)
    camera_id = request.match_info["camera_id"]
    hub = request.app.get(appkeys.RELAY)
    if hub is not None and (forwarded or hub.stream(camera_id) is not None):
        return await whep.play(request)
    if forwarded:
        raise _unavailable("this process does not pull the camera; try again shortly")
    holder = await leases.holder(request.app[appkeys.REDIS], camera_id)
    if _own(request, holder):
        return await whep.play(request)
    offer = await whep.read_body(request, whep.SDP)
    try:
        camera = await request.app[appkeys.REGISTRY].get_camera(camera_id)
    except NotFound:
        raise ApiError(404, "no such camera", headers=whep.CORS) from None
    if not camera.enabled:
        raise ApiError(409, "this camera is switched off by its restaurant", headers=whep.CORS)
    if holder is None:
        request.app[appkeys.FORWARDER].metrics.refused.labels("no_holder").inc()
        raise _unavailable("the camera is not being pulled yet; try again shortly")
    return await _forward(request, holder, offer)


async def _session_holder(request: web.Request) -> leases.Holder | None:
    """Where a session request goes: None to answer it here, else the camera's holder;
    404 when no process can have the session."""
    forwarded = _forwarded(request)
    hub = request.app.get(appkeys.RELAY)
    if hub is not None and (forwarded or hub.viewers.get(request.match_info["session_id"])):
        return None
    if forwarded:
        raise ApiError(404, NO_SESSION, headers=whep.CORS)
    holder = await leases.holder(request.app[appkeys.REDIS], request.match_info["camera_id"])
    if holder is None:
        raise ApiError(404, NO_SESSION, headers=whep.CORS)
    return None if _own(request, holder) else holder


@routes.delete("/whep/{camera_id}/{session_id}")
async def stop(request: web.Request) -> web.StreamResponse:
    """End a viewer's session, here or at the camera's holder."""
    holder = await _session_holder(request)
    if holder is None:
        return await whep.stop(request)
    return await _forward(request, holder, None)


@routes.patch("/whep/{camera_id}/{session_id}")
async def trickle(request: web.Request) -> web.StreamResponse:
    """Trickle ICE for a session, here or at the camera's holder."""
    holder = await _session_holder(request)
    if holder is None:
        return await whep.trickle(request)
    return await _forward(request, holder, await whep.read_body(request, whep.TRICKLE))


@routes.route("OPTIONS", "/whep/{camera_id}")
@routes.route("OPTIONS", "/whep/{camera_id}/{session_id}")
async def preflight(request: web.Request) -> web.Response:
    """CORS pre-flight, answered by the web process itself."""
    headers: CIMultiDict[str] = CIMultiDict(whep.CORS)
    for link in whep.link_headers(request.app[appkeys.FORWARDER].ice):
        headers.add("Link", link)
    headers["Accept-Post"] = whep.SDP
    return web.Response(status=204, headers=headers)
