"""Cross-site request forgery protection for everything a browser session can change.

A POST, PUT, PATCH or DELETE needs a valid token (form field ``csrf_token`` or header
``X-CSRF-Token``) when the browser's session cookie would authenticate it, and for every page
form (sign-in and sign-up included, against login forgery). Signed-in browsers use their
session's token; anonymous browsers a random token also kept in the ``kc_csrf`` cookie (double
submit). Requests with an ``Authorization`` header (API tokens) and the anonymous WHEP endpoints
carry no ambient credentials and are not checked.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from kitchencam import sessions
from kitchencam.httperrors import ApiError, Handler, is_api_path

CSRF_COOKIE = "kc_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXEMPT_PREFIXES = ("/whep/",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_NEW: web.RequestKey[str] = web.RequestKey("kitchencam_new_csrf")

REFUSAL = (
    "This form has expired or did not come from KitchenCam. Go back, reload the page and "
    "send it again."
)


async def token(request: web.Request) -> str:
    """The token pages put in their forms (and ``<meta name="csrf-token">``) for this browser."""
    session = await sessions.load(request)
    if session is not None:
        return session.csrf
    cookie = request.cookies.get(CSRF_COOKIE)
    if cookie:
        return cookie
    if _NEW not in request:
        request[_NEW] = secrets.token_urlsafe(32)
    return request[_NEW]


def attach(request: web.Request, response: web.StreamResponse) -> None:
    """Set the anonymous token's cookie on ``response`` if this request created one."""
    if _NEW in request:
        sessions.set_cookie(request, response, CSRF_COOKIE, request[_NEW])


def _checked(request: web.Request) -> bool:
    if request.method not in UNSAFE_METHODS or "Authorization" in request.headers:
        return False
    if request.path.startswith(EXEMPT_PREFIXES):
        return False
    return sessions.SESSION_COOKIE in request.cookies or not is_api_path(request.path)


async def _sent(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in FORM_TYPES:
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def _expected(request: web.Request) -> str:
    session = await sessions.load(request)
    if session is not None:
        return session.csrf
    return request.cookies.get(CSRF_COOKIE, "")


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (403) a state-changing browser request without the right token."""
    if _checked(request):
        expected = await _expected(request)
        sent = await _sent(request)
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise ApiError(403, REFUSAL)
    return await handler(request)
