"""The HTML pages, rendered by the real app: the playback page, its 404, its static files."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

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
