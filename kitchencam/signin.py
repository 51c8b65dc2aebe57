"""Signing in and out of the pages: ``/signin``, ``/signout`` and ``/`` (which sends each
person to their home page: restaurants to ``/portal``, regulators to ``/board``)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kitchencam import appkeys, sessions
from kitchencam.accounts import Accounts, SignInLimiter, minutes
from kitchencam.auth import Principal
from kitchencam.pages import render
from kitchencam.registry import NotFound

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_PASSWORD_CHARS = 1024
"""Longer passwords are refused before hashing (argon2 time grows with the input)."""
UNKNOWN_ACCOUNT_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$TUUmTrMz24sGlbB3uJz74g$"
    "RXaMq8dAymH2Xo7guUL97maqZgNA4SFeX+F5Ce56Voc"
)
"""Checked against when no account matches, so an unknown name costs as long as a wrong
password (answer times do not tell which accounts exist)."""
WRONG = "That e-mail address or user name and password do not match. Check them and try again."


def see_other(location: str) -> web.Response:
    """A 303 redirect (after a form post: the browser then GETs ``location``)."""
    return web.Response(status=303, headers={"Location": location})


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    """The signed-in person's home page, or the sign-in page."""
    who = await sessions.current(request)
    if who is None:
        return see_other("/signin")
    return see_other(sessions.HOME[who.kind])


@routes.get("/signin")
async def signin_form(request: web.Request) -> web.Response:
    """The sign-in form (one form for restaurants and regulators)."""
    target = sessions.safe_next(request.query.get("next"), "")
    return await render(request, "signin.html", next=target, identity="", error=None)


async def _verify(request: web.Request, identity: str, password: str) -> Principal | None:
    accounts = request.app[appkeys.ACCOUNTS]
    if await _is_restaurant_account(accounts, identity):
        rid = await accounts.verify(identity, password)
        return Principal("restaurant", rid) if rid is not None else None
    try:
        user = await request.app[appkeys.USERS].get(identity)
    except (NotFound, ValueError):
        await asyncio.to_thread(_password_matches, UNKNOWN_ACCOUNT_HASH, password)
        return None
    # argon2 costs tens of milliseconds of CPU: keep it off the event loop.
    if not await asyncio.to_thread(_password_matches, user.password_hash, password):
        return None
    return Principal(user.role, user.name)


async def _is_restaurant_account(accounts: Accounts, identity: str) -> bool:
    if "@" not in identity:
        return False
    try:
        return await accounts.exists(identity)
    except ValueError:
        return False


def _password_matches(password_hash: str, password: str) -> bool:
    """Runs on a worker thread: whether ``password`` matches the argon2 ``password_hash``."""
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@routes.post("/signin")
async def signin(request: web.Request) -> web.Response:
    """Check the credentials (rate-limited per account and client address) and start a session."""
    form = await request.post()
    identity = str(form.get("identity", "")).strip().lower()[:254]
    password = str(form.get("password", ""))
    target = sessions.safe_next(str(form.get("next", "")), "")
    limiter = SignInLimiter(request.app[appkeys.REDIS])
    address = sessions.client_ip(request)
    wait = await limiter.wait_s(identity, address)
    if wait:
        response = await render(
            request,
            "signin.html",
            status=429,
            next=target,
            identity=identity,
            error=f"Too many failed attempts. Try again in {minutes(wait)}.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    who = None
    if identity and password and len(password) <= MAX_PASSWORD_CHARS:
        who = await _verify(request, identity, password)
    if who is None:
        await limiter.failed(identity, address)
        log.info("failed sign-in from %s", address)
        return await render(
            request, "signin.html", status=401, next=target, identity=identity, error=WRONG
        )
    await limiter.succeeded(identity)
    label = who.ident
    if who.kind == "restaurant":
        label = (await request.app[appkeys.REGISTRY].get_restaurant(who.ident)).name
    response = see_other(target or sessions.HOME[who.kind])
    await sessions.sign_in(request, response, who, label)
    return response


@routes.post("/signout")
async def signout(request: web.Request) -> web.Response:
    """End the session."""
    response = see_other("/signin")
    await sessions.sign_out(request, response)
    return response
