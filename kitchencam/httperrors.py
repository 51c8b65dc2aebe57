"""One place that turns errors into HTTP answers with JSON bodies a person can act on."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from kitchencam import appkeys
from kitchencam.addresses import AddressError
from kitchencam.redisconn import UNAVAILABLE_ERRORS
from kitchencam.registry import Conflict, NotFound

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorPage = Callable[[web.Request, int, str, list[dict[str, str]]], Awaitable[web.Response]]
"""Renders an HTML error page: request, status, what to tell the person, field problems."""

API_PREFIXES = ("/api/", "/whep/", "/metrics", "/healthz")
FRIENDLY = {
    400: "The request could not be understood. Go back and try again.",
    404: "There is no page at this address. Check the link you followed.",
    405: "This page cannot be used that way. Go back and try again.",
    413: "What you sent is too large.",
    500: "Something went wrong on our side. Try again in a moment.",
}


def is_api_path(path: str) -> bool:
    """Whether ``path`` is answered in JSON (API, WHEP, operations) rather than HTML pages."""
    return path.startswith(API_PREFIXES)


REDIS_RETRY_AFTER_S = 5
"""Seconds a client is told to wait (``Retry-After``) when Redis is unreachable."""


def error_response(
    status: int,
    detail: str,
    *,
    fields: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON error: ``{"error": {"status", "title", "detail", "fields"?}}``."""
    body: dict[str, object] = {
        "status": status,
        "title": _title(status),
        "detail": detail,
    }
    if fields:
        body["fields"] = fields
    return web.json_response({"error": body}, status=status, headers=headers)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def validation_fields(err: ValidationError) -> list[dict[str, str]]:
    """Field name and message of each problem; never the offending value (it may be secret)."""
    fields = []
    for e in err.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(body)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "is not a known field; remove it"
        fields.append({"field": loc, "message": msg})
    return fields


class ApiError(Exception):
    """An error a view raises to answer with ``status`` and ``detail``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


async def _answer(
    request: web.Request,
    status: int,
    detail: str,
    *,
    fields: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    generic: bool = False,
) -> web.Response:
    """JSON for API paths; an HTML page for page paths when the app renders pages (``generic``:
    the detail is the framework's reason phrase, so the page says something friendlier)."""
    page = request.app.get(appkeys.ERROR_PAGE)
    if page is None or is_api_path(request.path):
        return error_response(status, detail, fields=fields, headers=headers)
    if generic or status >= 500:
        detail = FRIENDLY.get(status, detail)
    response = await page(request, status, detail, fields or [])
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map domain and framework errors to JSON answers (HTML pages outside the API paths);
    count every answer."""
    metrics = request.app[appkeys.METRICS]
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        response = await handler(request)
    except ApiError as err:
        response = await _answer(request, err.status, err.detail, headers=err.headers)
    except ValidationError as err:
        response = await _answer(
            request, 422, "some fields need fixing", fields=validation_fields(err)
        )
    except AddressError as err:
        response = await _answer(
            request, 422, str(err), fields=[{"field": "url", "message": str(err)}]
        )
    except NotFound as err:
        response = await _answer(request, 404, str(err))
    except Conflict as err:
        response = await _answer(request, 409, str(err))
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[appkeys.SETTINGS].max_body_bytes
        response = await _answer(
            request, 413, f"the request body is larger than the {limit} bytes allowed"
        )
    except web.HTTPException as err:
        if err.status < 400:
            raise
        kept = {k: v for k, v in err.headers.items() if k.lower() != "content-type"}
        response = await _answer(request, err.status, err.reason, headers=kept, generic=True)
    except UNAVAILABLE_ERRORS as err:
        # The process's heartbeat logs the outage once; one line per request would flood.
        log.debug("%s %s: Redis unreachable (%r); 503", request.method, route_name, err)
        response = await _answer(
            request,
            503,
            "the service's database is unreachable for a moment; retry in a few seconds",
            headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
        )
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, route_name)
        response = await _answer(request, 500, "something went wrong on our side; try again later")
    metrics.requests.labels(request.method, route_name, str(response.status)).inc()
    metrics.request_seconds.labels(route_name).observe(time.perf_counter() - started)
    return response


async def read_json(request: web.Request) -> dict[str, object]:
    """The request's JSON object, or an ``ApiError`` (415, 413, 400) saying what is wrong."""
    if request.content_type != "application/json":
        raise ApiError(415, "send the body as JSON with Content-Type: application/json")
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise ApiError(400, 'the body must be a JSON object, e.g. {"name": "..."}')
    return body
