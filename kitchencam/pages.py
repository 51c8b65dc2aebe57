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
from markupsafe import Markup

from kitchencam import appkeys, csrf, sessions, wording
from kitchencam.registry import NotFound

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
STATIC_PREFIX = "/static"
FAVICON = "favicon.svg"

routes = web.RouteTableDef()


def templates() -> Environment:
    """The page templates, HTML-escaped by default, with the filters ``when`` and ``ago``
    (Unix seconds as a ``<time>`` element that ``time.js`` shows in the viewer's local time)
    and the globals ``state_title``, ``state_note``, ``check_title``, ``cause_words``,
    ``change_words`` and ``raises_flag`` (:mod:`kitchencam.wording`)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    env.filters["when"] = when
    env.filters["ago"] = ago
    env.globals.update(
        state_title=wording.title,
        state_note=wording.note,
        check_title=wording.check_title,
        cause_words=wording.cause,
        change_words=wording.change,
        raises_flag=wording.raises_flag,
    )
    return env


def iso(t: float) -> str:
    """A Unix time as ISO 8601 in UTC (``2026-11-29T14:05:09Z``): a ``<time>``'s datetime."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_text(t: float) -> str:
    """A Unix time as people read it in UTC ("29 Nov 2026 14:05 UTC"): the text a page shows
    before ``time.js`` turns it into the viewer's local time (or without JavaScript)."""
    return datetime.fromtimestamp(t, UTC).strftime("%d %b %Y %H:%M UTC").lstrip("0")


def when(t: float | None) -> Markup:
    """A Unix time as ``<time datetime="ISO">29 Nov 2026 14:05 UTC</time>`` (``time.js``
    shows it as "today 14:05" in the viewer's time zone), or a dash."""
    if not t:
        return Markup("-")
    return Markup('<time datetime="{}" data-time="when">{}</time>').format(iso(t), utc_text(t))


def ago(t: float | None, now: float | None = None) -> Markup:
    """A Unix time as ``<time>`` reading "5 min ago" (kept current by ``time.js``), with the
    exact time as its tooltip, or a dash."""
    if not t:
        return Markup("-")
    return Markup('<time datetime="{}" data-time="ago" title="{}">{}</time>').format(
        iso(t), utc_text(t), ago_text(t, now)
    )


def ago_text(t: float, now: float | None = None) -> str:
    """How long ago a Unix time was: "just now", "5 min ago", "3 h ago", "2 days ago"."""
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


@routes.get("/favicon.ico")
async def favicon(request: web.Request) -> web.Response:
    """Browsers that ask for ``/favicon.ico`` get the SVG icon the pages link to."""
    raise web.HTTPMovedPermanently(f"{STATIC_PREFIX}/{FAVICON}")


@routes.get("/play/{camera_id}")
async def play(request: web.Request) -> web.Response:
    """A camera's name and its live video, played over WHEP by ``player.js``."""
    camera_id = request.match_info["camera_id"]
    try:
        camera = await request.app[appkeys.REGISTRY].get_camera(camera_id)
    except NotFound:
        return await render(request, "not_found.html", status=404, what="camera")
    return await render(request, "play.html", camera=camera, whep_url=f"/whep/{camera.id}")
