"""HTML pages for people: rendering with the shared page context, error pages, and the
playback page of one camera (``/play/{camera_id}``).

Templates live in ``web/templates`` and static files in ``web/static``, next to the package
(the repository's layout; the package is installed editable). Every template extends
``base.html`` and gets ``who`` (the signed-in ``Principal`` or ``None``), ``who_label`` (the name
to show for them), ``csrf_token`` (put it in every form as the ``csrf_token`` field) and
``static`` (the static files' URL prefix)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from jinja2 import Environment, FileSystemLoader

from kitchencam import appkeys, csrf, sessions
from kitchencam.registry import NotFound

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
STATIC_PREFIX = "/static"

routes = web.RouteTableDef()


def templates() -> Environment:
    """The page templates, HTML-escaped by default, with the filters ``when`` (Unix seconds
    as "2026-11-29 14:05 UTC") and ``ago`` (as "5 min ago")."""
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    env.filters["when"] = when
    env.filters["ago"] = ago
    return env


def when(t: float | None) -> str:
    """A Unix time as people read it, in UTC."""
    if not t:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(t: float | None, now: float | None = None) -> str:
    """How long ago a Unix time was: "just now", "5 min ago", "3 h ago", "2 days ago"."""
    if not t:
        return "-"
    seconds = max(0.0, (now if now is not None else time.time()) - t)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return "1 day ago" if days == 1 else f"{days} days ago"


def setup(app: web.Application) -> None:
    """Give ``app`` the page routes, their templates and ``/static/``."""
    app[appkeys.TEMPLATES] = templates()
    app[appkeys.ERROR_PAGE] = error_page
    app.router.add_routes(routes)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="static")


async def render(
    request: web.Request, name: str, status: int = 200, **context: object
) -> web.Response:
    """The template ``name`` rendered as an HTML answer, with ``who``, ``csrf_token`` and
    ``static`` in its context; pages of a signed-in person are never cached."""
    session = await sessions.load(request)
    token = await csrf.token(request)
    return _html(request, name, status, session, token, context)


def _html(
    request: web.Request,
    name: str,
    status: int,
    session: sessions.Session | None,
    token: str,
    context: dict[str, object],
) -> web.Response:
    template = request.app[appkeys.TEMPLATES].get_template(name)
    shared = {
        "static": STATIC_PREFIX,
        "who": session.who if session else None,
        "who_label": session.label if session else "",
        "csrf_token": token,
    }
    html = template.render({**shared, **context})
    response = web.Response(text=html, status=status, content_type="text/html")
    if session is not None:
        response.headers["Cache-Control"] = "no-store"
    csrf.attach(request, response)
    return response


async def error_page(
    request: web.Request, status: int, detail: str, fields: list[dict[str, str]]
) -> web.Response:
    """A friendly error page (``error.html``) saying what happened and what to do; it shows
    only the message given, never internals, and renders even when Redis is down."""
    session: sessions.Session | None
    try:
        session = await sessions.load(request)
        token = await csrf.token(request)
    except Exception:  # an error page must render whatever broke (Redis down...)
        log.debug("error page for %s without session", request.path, exc_info=True)
        session, token = None, ""
    context: dict[str, object] = {"status": status, "detail": detail, "fields": fields}
    return _html(request, "error.html", status, session, token, context)


@routes.get("/play/{camera_id}")
async def play(request: web.Request) -> web.Response:
    """A camera's name and its live video, played over WHEP by ``player.js``."""
    camera_id = request.match_info["camera_id"]
    try:
        camera = await request.app[appkeys.REGISTRY].get_camera(camera_id)
    except NotFound:
        return await render(request, "not_found.html", status=404, what="camera")
    return await render(request, "play.html", camera=camera, whep_url=f"/whep/{camera.id}")
