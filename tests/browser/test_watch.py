"""The consumer's watch page in a real Chromium: it plays, shows a placeholder within 15 s of
the camera going away, and plays again when the camera comes back, all without a reload."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.async_api import Page

from tests.browser.support import CAMERA_SIZE, Server, blocking, make_camera, shot
from tests.support.camera import RtspCamera

PLAY_DEADLINE_MS = 20_000
PLACEHOLDER_DEADLINE_MS = 15_000  # the promise: a stopped camera shows within 15 s
RETURN_DEADLINE_MS = 60_000  # reconnect back-off, the checker's hold time, a status poll
FRAMES_RISE = 10  # decoded frames that must arrive after the first, to call it playing
RELOAD_MARK = "__kitchencamNotReloaded"

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
