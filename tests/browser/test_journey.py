"""A new restaurant's first visit in a real Chromium, by clicking and typing only: it signs up,
adds its camera through the form, sees the camera ``ok``, and a regulator (another browser)
finds the camera on the board."""

from __future__ import annotations

import re
import secrets
import time

from playwright.async_api import BrowserContext, Page

from tests.browser.support import Server, regulator_page, shot
from tests.support.camera import RtspCamera

OK_DEADLINE_S = 30.0  # the relay's first keyframe and the checker's first verdict
RELOAD_EVERY_MS = 1000  # the portal's camera page shows the state it had when it loaded


OK_WITH_PICTURE = """() => {
  const badge = document.querySelector("h1 .badge");
  const picture = document.querySelector("img.preview");
  return badge !== null && badge.textContent.trim() === "Picture good"
    && badge.classList.contains("state-ok")
    && picture !== null && picture.complete && picture.naturalWidth > 0;
}"""


async def after_reloads(page: Page, condition: str, deadline_s: float, what: str) -> None:
    """Reload the page until ``condition`` (a script) holds on it."""
    end = time.monotonic() + deadline_s
    while not await page.evaluate(condition):
        assert time.monotonic() < end, f"no {what} within {deadline_s}s"
        await page.wait_for_timeout(RELOAD_EVERY_MS)
        await page.reload()


async def test_sign_up_add_a_camera_see_it_ok_and_on_the_board(
    context: BrowserContext,
    other_context: BrowserContext,
    server: Server,
    camera: RtspCamera,
    name: str,
) -> None:
    n = secrets.token_hex(4)  # licence numbers and e-mail addresses are unique
    page = await context.new_page()
    await page.goto(server.base + "/")
    await page.get_by_role("link", name="Register a restaurant").first.click()
    await page.wait_for_url("**/signup")
    await page.fill("#name", "Lucky Dumpling House")
    await page.fill("#address", "88 Nathan Road")
    await page.fill("#district", "Yau Tsim Mong")
    await page.fill("#licence_number", f"JY-JOURNEY-{n}")
    await page.fill("#contact", "+852 5555 0142")
    await page.fill("#email", f"owner{n}@lucky-dumpling.example")
    await page.fill("#password", "dumplings every day")
    await page.fill("#password_again", "dumplings every day")
    await shot(page, name, "signup-form")
    await page.get_by_role("button", name="Register").click()
    token = page.locator("#api-token")
    await token.wait_for()
    assert (await token.text_content() or "").startswith("kcr_")
    await shot(page, name, "signed-up")

    await page.get_by_role("link", name="Add your cameras").click()
    await page.wait_for_url("**/portal")
    await page.fill("#name", "Dumpling steamers")
    await page.fill("#location", "back kitchen, over the steamers")
    await page.fill("#url", camera.url)
    await page.get_by_role("button", name="Add camera").click()
    await page.wait_for_url(re.compile(r".*/portal/cameras/[^/?]+\?notice=added$"))
    match = re.search(r"/portal/cameras/([^/?]+)", page.url)
    assert match is not None
    cid = match.group(1)
    # ``ok`` with a picture the checker took: the camera really delivers, it is not only held.
    await after_reloads(page, OK_WITH_PICTURE, OK_DEADLINE_S, "ok state with a latest picture")
    await shot(page, name, "camera-ok")

    board = await regulator_page(other_context, server)
    row = board.locator(f'#board-rows tr[data-camera="{cid}"]')
    await row.wait_for()
    assert await row.get_attribute("data-state") == "ok"
    assert "Lucky Dumpling House" in (await row.text_content() or "")
