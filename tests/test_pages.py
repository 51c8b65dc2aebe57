"""The HTML pages, rendered by the real app: the playback page, its 404, its static files,
the icon, and times as ``<time>`` elements."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from kitchencam import pages
from tests.helpers import add_camera, register


async def test_play_page_shows_the_camera_name_escaped(client: TestClient) -> None:
    rid, token = await register(client)
    name = 'Wok <script>alert("x")</script> & grill'
    cam = await add_camera(client, rid, token, name=name)

    resp = await client.get(f"/play/{cam['id']}")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert "<script>alert" not in html
    assert "Wok &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; grill" in html
    assert f'data-whep="/whep/{cam["id"]}"' in html
    assert "<video" in html and "/static/player.js" in html


async def test_play_page_of_an_unknown_camera_is_404(client: TestClient) -> None:
    resp = await client.get("/play/no-such-camera")
    assert resp.status == 404
    assert resp.content_type == "text/html"
    assert "no such camera" in await resp.text()


async def test_player_script_and_styles_are_served(client: TestClient) -> None:
    js = await client.get("/static/player.js")
    assert js.status == 200
    assert "javascript" in js.content_type
    assert "export async function play(" in await js.text()
    assert (await client.get("/static/player.css")).status == 200


async def test_the_icon_is_linked_and_favicon_ico_leads_to_it(client: TestClient) -> None:
    page = await (await client.get("/signin")).text()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    assert '<script type="module" src="/static/time.js"></script>' in page
    resp = await client.get("/favicon.ico", allow_redirects=False)
    assert resp.status == 301 and resp.headers["Location"] == "/static/favicon.svg"
    icon = await client.get("/favicon.ico")
    assert icon.status == 200 and icon.content_type == "image/svg+xml"
    assert (await client.get("/static/time.js")).status == 200


@pytest.mark.parametrize(
    ("t", "html"),
    [
        (
            1_795_941_000.0,
            '<time datetime="2026-11-29T08:30:00Z" data-time="when">29 Nov 2026 08:30 UTC</time>',
        ),
        (None, "-"),
        (0.0, "-"),
    ],
)
def test_when_renders_a_time_element_with_a_utc_fallback(t: float | None, html: str) -> None:
    assert str(pages.when(t)) == html


def test_ago_renders_a_relative_time_with_the_exact_time_as_its_tooltip() -> None:
    t = 1_795_941_000.0
    assert str(pages.ago(t, now=t + 300)) == (
        '<time datetime="2026-11-29T08:30:00Z" data-time="ago" title="29 Nov 2026 08:30 UTC">'
        "5 min ago</time>"
    )
    assert [pages.ago_text(t, now=t + s) for s in (5, 3 * 3600, 86400, 3 * 86400)] == [
        "just now",
        "3 h ago",
        "1 day ago",
        "3 days ago",
    ]


def test_templates_show_times_as_time_elements() -> None:
    template = pages.templates().from_string("<p>{{ t|when }} ({{ t|ago }})</p>")
    html = template.render(t=1_795_941_000.0)
    assert html.count("<time ") == 2 and "&lt;time" not in html
