"""HTML pages for people: for now the playback page of one camera (``/play/{camera_id}``).

Templates live in ``web/templates`` and static files in ``web/static``, next to the package
(the repository's layout; the package is installed editable)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from jinja2 import Environment, FileSystemLoader

from kitchencam import appkeys
from kitchencam.registry import NotFound

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
STATIC_PREFIX = "/static"

routes = web.RouteTableDef()


def templates() -> Environment:
    """The page templates, HTML-escaped by default."""
    return Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)


def setup(app: web.Application) -> None:
    """Give ``app`` the page routes, their templates and ``/static/``."""
    app[appkeys.TEMPLATES] = templates()
    app.router.add_routes(routes)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="static")


def render(request: web.Request, name: str, status: int = 200, **context: object) -> web.Response:
    """The template ``name`` rendered as an HTML answer."""
    html = request.app[appkeys.TEMPLATES].get_template(name).render(static=STATIC_PREFIX, **context)
    return web.Response(text=html, status=status, content_type="text/html")


@routes.get("/play/{camera_id}")
async def play(request: web.Request) -> web.Response:
    """A camera's name and its live video, played over WHEP by ``player.js``."""
    camera_id = request.match_info["camera_id"]
    try:
        camera = await request.app[appkeys.REGISTRY].get_camera(camera_id)
    except NotFound:
        return render(request, "not_found.html", status=404, what="camera")
    return render(request, "play.html", camera=camera, whep_url=f"/whep/{camera.id}")
