"""Browser sessions kept server-side in Redis, behind an opaque ``kc_session`` cookie.

The cookie holds 256 random bits; Redis holds only their SHA-256 (``kc:session:{sha256}``), the
signed-in principal and the session's CSRF token. A session expires after ``SESSION_IDLE_S``
without a request and at the latest ``SESSION_MAX_AGE_S`` after sign-in; it ends at once when its
restaurant or regulator account is removed.

Cookies are ``HttpOnly`` and ``SameSite=Lax``, and ``Secure`` automatically when the request came
over HTTPS (the connection's own TLS, or ``X-Forwarded-Proto: https`` when ``trust_proxy`` is
set). Over plain ``http://127.0.0.1`` (tests, a laptop demo) they are not ``Secure``: browsers
drop ``Secure`` cookies set over plain HTTP.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from kitchencam import appkeys, keys
from kitchencam.auth import Principal
from kitchencam.httperrors import ApiError

log = logging.getLogger(__name__)

SESSION_COOKIE = "kc_session"
SESSION_IDLE_S = 8 * 3600
SESSION_MAX_AGE_S = 7 * 86400
KINDS = ("restaurant", "regulator")
HOME = {"restaurant": "/portal", "regulator": "/board"}


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: who, the session's CSRF token, when it signed in (Unix s), and
    the name pages show for who (the restaurant's name at sign-in, the user name)."""

    who: Principal
    csrf: str
    started: float
    label: str = ""


_LOADED: web.RequestKey[Session | None] = web.RequestKey("kitchencam_session")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def is_secure(request: web.Request) -> bool:
    """Whether the browser reached us over HTTPS (through a trusted proxy's word if set)."""
    if request.secure:
        return True
    if request.app[appkeys.SETTINGS].trust_proxy:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def client_ip(request: web.Request) -> str:
    """The client's address: the peer, or the proxy's ``X-Forwarded-For`` when trusted."""
    if request.app[appkeys.SETTINGS].trust_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.remote or "unknown"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    """Set a browser-session cookie: HttpOnly, SameSite=Lax, Secure over HTTPS."""
    response.set_cookie(
        name, value, path="/", httponly=True, samesite="Lax", secure=is_secure(request)
    )


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 0x20 for c in target):
        return default
    return target


async def load(request: web.Request) -> Session | None:
    """The request's session (looked up once per request, idle expiry renewed), or ``None``."""
    if _LOADED in request:
        return request[_LOADED]
    session = await _lookup(request)
    request[_LOADED] = session
    return session


async def _lookup(request: web.Request) -> Session | None:
    value = request.cookies.get(SESSION_COOKIE)
    if not value:
        return None
    redis = request.app[appkeys.REDIS]
    raw = await redis.getex(keys.session(_digest(value)), ex=SESSION_IDLE_S)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        session = Session(
            Principal(data["kind"], data["ident"]),
            data["csrf"],
            float(data["t"]),
            str(data.get("label") or data["ident"]),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("dropping a malformed session record")
        await redis.delete(keys.session(_digest(value)))
        return None
    if session.who.kind not in KINDS or time.time() - session.started > SESSION_MAX_AGE_S:
        await redis.delete(keys.session(_digest(value)))
        return None
    account = (
        keys.restaurant(session.who.ident)
        if session.who.kind == "restaurant"
        else keys.user(session.who.ident)
    )
    if not await redis.exists(account):
        await redis.delete(keys.session(_digest(value)))
        return None
    return session


async def current(request: web.Request) -> Principal | None:
    """Who is signed in on this browser, or ``None``."""
    session = await load(request)
    return session.who if session is not None else None


async def require(request: web.Request, kind: str) -> Principal:
    """The signed-in principal of ``kind``; nobody: a redirect to sign in; another kind: 403."""
    who = await current(request)
    if who is None:
        raise web.HTTPSeeOther("/signin?next=" + quote(request.path_qs, safe="/"))
    if who.kind != kind:
        raise ApiError(
            403,
            f"This page is for {kind}s; you are signed in as a {who.kind}. "
            "Sign out and sign in with the right account to open it.",
        )
    return who


async def start(request: web.Request, who: Principal, label: str = "") -> str:
    """Start a new session for ``who`` (ending the browser's previous one); return the cookie
    value to set with ``set_cookie(request, response, SESSION_COOKIE, value)``. Pages rendered
    for this request from now on see ``who`` and the new session's CSRF token."""
    old = request.cookies.get(SESSION_COOKIE)
    redis = request.app[appkeys.REDIS]
    if old:
        await redis.delete(keys.session(_digest(old)))
    value = secrets.token_urlsafe(32)
    session = Session(who, secrets.token_urlsafe(32), round(time.time(), 3), label or who.ident)
    record = {
        "kind": who.kind,
        "ident": who.ident,
        "csrf": session.csrf,
        "t": session.started,
        "label": session.label,
    }
    await redis.set(keys.session(_digest(value)), json.dumps(record), ex=SESSION_IDLE_S)
    request[_LOADED] = session
    log.info("%s %s signed in", who.kind, who.ident)
    return value


async def sign_in(
    request: web.Request, response: web.StreamResponse, who: Principal, label: str = ""
) -> None:
    """Start a new session for ``who`` (ending the browser's previous one) and set its cookie;
    ``label`` is the name pages show (default: ``who.ident``)."""
    set_cookie(request, response, SESSION_COOKIE, await start(request, who, label))


async def sign_out(request: web.Request, response: web.StreamResponse) -> None:
    """End the browser's session, if any, and clear its cookie."""
    value = request.cookies.get(SESSION_COOKIE)
    if value:
        await request.app[appkeys.REDIS].delete(keys.session(_digest(value)))
        response.del_cookie(SESSION_COOKIE, path="/")
    request[_LOADED] = None
