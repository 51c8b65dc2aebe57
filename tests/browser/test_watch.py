"""The consumer's watch page in a real Chromium: it plays, shows a placeholder within 15 s of
the camera going away, and plays again when the camera comes back, all without a reload; and it
stops streaming while the tab is hidden and plays again when it is visible."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from playwright.async_api import Page, Response

from tests.browser.support import CAMERA_SIZE, POLL_S, Server, blocking, make_camera, shot
from tests.support.camera import RtspCamera

PLAY_DEADLINE_MS = 20_000
PLACEHOLDER_DEADLINE_MS = 15_000  # the promise: a stopped camera shows within 15 s
RETURN_DEADLINE_MS = 60_000  # reconnect back-off, the checker's hold time, a status poll
FRAMES_RISE = 10  # decoded frames that must arrive after the first, to call it playing
RELOAD_MARK = "__kitchencamNotReloaded"
VIEWERS_DEADLINE_S = 15.0  # the relay publishes its figures every 5 s; the page caches 1 s

# Failure injection: headless Chromium keeps every page "visible" whatever happens to it
# (measured with Chromium 156: another page or tab brought to front, Target.activateTarget,
# a window minimised through Browser.setWindowBounds), and the DevTools protocol has no command
# that sets a page's visibility. So the hidden state is faked on the document itself, and the
# real visibilitychange event is dispatched; going visible again removes the fake, so the page
# reads the browser's own (visible) state.
FAKE_HIDDEN = """() => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""
FAKE_HIDDEN_ENDS = """() => {
  delete document.hidden;
  delete document.visibilityState;
  document.dispatchEvent(new Event("visibilitychange"));
  return document.visibilityState;
}"""

FRAMES = """(cid) => {
  const card = document.querySelector(`[data-camera="${cid}"]`);
  const v = card && card.querySelector('[data-field="video"]');
  if (!v || v.hidden || v.videoWidth === 0) return 0;
  return v.getVideoPlaybackQuality().totalVideoFrames;
}"""

LIVE_SHOWN = """(cid) => {
  const card = document.querySelector(`[data-camera="${cid}"]`);
  return card !== null && card.dataset.player === "live"
    && card.querySelector('[data-field="overlay"]').hidden;
}"""

PLACEHOLDER_SHOWN = """(cid) => {
  const card = document.querySelector(`[data-camera="${cid}"]`);
  const p = card && card.querySelector('[data-field="placeholder"]');
  return p !== null && !p.hidden && p.getBoundingClientRect().height > 0;
}"""


async def frames(page: Page, cid: str) -> int:
    """Frames the camera's video element has decoded so far (0 while it shows none)."""
    return int(await page.evaluate(FRAMES, cid))


async def wait_playing(page: Page, cid: str, deadline_ms: int = PLAY_DEADLINE_MS) -> None:
    """Wait until the camera's video has dimensions, its decoded frame count rises, and the
    card says it is live (no words over the picture)."""
    await page.wait_for_function(f"(cid) => ({FRAMES})(cid) > 0", arg=cid, timeout=deadline_ms)
    target = await frames(page, cid) + FRAMES_RISE
    await page.wait_for_function(
        f"([cid, n]) => ({FRAMES})(cid) >= n", arg=[cid, target], timeout=PLAY_DEADLINE_MS
    )
    await page.wait_for_function(LIVE_SHOWN, arg=cid, timeout=PLAY_DEADLINE_MS)


async def viewers(server: Server, rid: str, cid: str) -> int | None:
    """The camera's viewers as the watch page's status answer gives them (the relay's figure)."""
    status = await blocking(server.api, "GET", f"/r/{rid}/status.json")
    found = {c["id"]: c["viewers"] for c in status["cameras"]}
    value = found[cid]
    return value if isinstance(value, int) else None


async def wait_viewers(server: Server, rid: str, cid: str, wanted: int) -> None:
    """Wait until the server counts ``wanted`` viewers of the camera (status polling)."""
    end = time.monotonic() + VIEWERS_DEADLINE_S
    while True:
        found = await viewers(server, rid, cid)
        if found == wanted:
            return
        assert time.monotonic() < end, f"camera {cid} has {found} viewers, not {wanted}"
        await asyncio.sleep(POLL_S)


@pytest.fixture
def own_camera() -> Iterator[RtspCamera]:
    """A camera this test alone stops and starts."""
    with make_camera() as cam:
        yield cam


async def test_watch_page_plays(page: Page, server: Server, camera: RtspCamera, name: str) -> None:
    rid, token = await blocking(server.restaurant)
    cid = await blocking(server.camera, rid, token, camera.url)
    await page.goto(f"{server.base}/r/{rid}")
    await wait_playing(page, cid)
    size = await page.evaluate(
        "(cid) => { const v = document.querySelector(`[data-camera='${cid}'] video`);"
        " return [v.videoWidth, v.videoHeight]; }",
        cid,
    )
    assert tuple(size) == CAMERA_SIZE
    await shot(page, name, "playing")


async def test_stopped_camera_shows_a_placeholder_then_plays_again_without_reload(
    page: Page, server: Server, own_camera: RtspCamera, name: str
) -> None:
    rid, token = await blocking(server.restaurant)
    cid = await blocking(server.camera, rid, token, own_camera.url)
    await page.goto(f"{server.base}/r/{rid}")
    await wait_playing(page, cid)
    await page.evaluate(f"() => {{ window.{RELOAD_MARK} = true; }}")

    await blocking(own_camera.stop)
    stopped = time.monotonic()
    await page.wait_for_function(PLACEHOLDER_SHOWN, arg=cid, timeout=PLACEHOLDER_DEADLINE_MS)
    assert time.monotonic() - stopped <= PLACEHOLDER_DEADLINE_MS / 1000
    await shot(page, name, "placeholder")

    await blocking(own_camera.start)
    await page.wait_for_function(
        f"(cid) => !({PLACEHOLDER_SHOWN})(cid)", arg=cid, timeout=RETURN_DEADLINE_MS
    )
    await wait_playing(page, cid, RETURN_DEADLINE_MS)
    assert await page.evaluate(f"() => window.{RELOAD_MARK} === true"), "the page reloaded"
    await shot(page, name, "playing-again")


async def test_hidden_tab_stops_streaming_and_visible_tab_plays_again(
    page: Page, server: Server, camera: RtspCamera, name: str
) -> None:
    rid, token = await blocking(server.restaurant)
    cid = await blocking(server.camera, rid, token, camera.url)
    ended: list[Response] = []

    def on_response(response: Response) -> None:
        if response.request.method == "DELETE" and "/whep/" in response.url:
            ended.append(response)

    page.on("response", on_response)
    await page.goto(f"{server.base}/r/{rid}")
    await wait_playing(page, cid)
    await wait_viewers(server, rid, cid, 1)
    await page.evaluate(f"() => {{ window.{RELOAD_MARK} = true; }}")

    before = len(ended)  # a session replaced while it started up was ended already
    await page.evaluate(FAKE_HIDDEN)
    await wait_viewers(server, rid, cid, 0)
    statuses = [r.status for r in ended[before:]]
    assert statuses and all(s == 200 for s in statuses), f"WHEP DELETEs when hidden: {statuses}"
    assert await page.evaluate(
        "(cid) => document.querySelector(`[data-camera='${cid}'] video`).srcObject === null", cid
    ), "the hidden page still holds the stream"

    assert await page.evaluate(FAKE_HIDDEN_ENDS) == "visible"
    await wait_playing(page, cid)
    await wait_viewers(server, rid, cid, 1)
    assert await page.evaluate(f"() => window.{RELOAD_MARK} === true"), "the page reloaded"
    await shot(page, name, "playing-again")
