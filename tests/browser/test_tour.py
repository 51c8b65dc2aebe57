"""Every page, as the person it is for, in a real Chromium: it answers 200 (404 for the
not-found page), its scripts raise nothing and log no error, the watch page fits a phone's
width, and a screenshot of each is kept in ``test-artifacts/screenshots/tour-<page>.png`` for a
person to look at."""

from __future__ import annotations

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    ViewportSize,
)

from tests.browser.support import Server, blocking, regulator_page, shot, sign_up, wait_state
from tests.support.camera import RtspCamera

PAGE_DEADLINE_MS = 15_000
PHONE: ViewportSize = {"width": 390, "height": 844}
OK_DEADLINE_S = 30.0
# WHEP answers errors the player handles by design: 503 + Retry-After while the relay has no
# keyframe yet, 404 for a session that already ended.
PLAYER_HANDLED = "/whep/"
PLAYING = """() => [...document.querySelectorAll("video")].every((v) => v.videoWidth > 0)"""
WATCH_LIVE = """() => [...document.querySelectorAll("[data-camera]")].every(
  (card) => card.dataset.player === "live")"""
PLAY_LIVE = "() => document.getElementById('status').textContent === 'Live'"
BOARD_LIVE = """() => document.getElementById("board-status").textContent.includes("on")"""


class Visitor:
    """Opens pages in one browser context and collects what went wrong on them."""

    def __init__(self, page: Page, server: Server) -> None:
        self.page = page
        self.server = server
        self.problems: list[str] = []
        self.expected: set[str] = set()  # URLs whose error status is the point of the visit
        page.on("pageerror", lambda err: self.problems.append(f"{page.url}: {err}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _unexpected(self, url: str) -> bool:
        return not (url in self.expected or PLAYER_HANDLED in url)

    def _response(self, response: Response) -> None:
        if response.status >= 400 and self._unexpected(response.url):
            self.problems.append(f"{self.page.url}: {response.status} {response.url}")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and self._unexpected(message.location.get("url", "")):
            self.problems.append(f"{self.page.url}: console: {message.text}")

    async def visit(
        self, path: str, label: str, status: int = 200, ready: str = "() => true"
    ) -> None:
        """Open ``path``, check its status, wait until ``ready`` (a script) holds, keep its
        screenshot."""
        if status >= 400:
            self.expected.add(self.server.base + path)
        resp = await self.page.goto(self.server.base + path)
        assert resp is not None and resp.status == status, f"{path}: {resp and resp.status}"
        await self.page.wait_for_function(ready, timeout=PAGE_DEADLINE_MS)
        await shot(self.page, "tour", label)


async def test_every_page_renders_cleanly(
    browser: Browser,
    context: BrowserContext,
    other_context: BrowserContext,
    server: Server,
    camera: RtspCamera,
) -> None:
    anonymous = Visitor(await context.new_page(), server)
    await anonymous.visit("/signin", "signin")
    await anonymous.visit("/signup", "signup")
    await anonymous.visit("/no/such/page", "not-found", status=404)

    page = anonymous.page
    token = await sign_up(page, server, "Tour Kitchen")
    await shot(page, "tour", "signup-done")
    rid = (await blocking(server.api, "GET", "/api/v1/me", None, token))["id"]
    cid = await blocking(server.camera, rid, token, camera.url, name="Tour camera")
    await wait_state(server, cid, token, "ok", OK_DEADLINE_S)
    restaurant = anonymous  # the same browser, now signed in as the restaurant
    await restaurant.visit("/portal", "portal")
    await restaurant.visit(f"/portal/cameras/{cid}", "portal-camera")
    await restaurant.visit(f"/portal/cameras/{cid}/delete", "portal-delete")
    await restaurant.visit("/portal/webhook", "portal-webhook")
    await restaurant.visit(f"/r/{rid}", "watch", ready=WATCH_LIVE)
    await restaurant.visit(f"/play/{cid}", "play", ready=PLAY_LIVE)

    regulator = Visitor(await regulator_page(other_context, server), server)
    await regulator.visit("/board", "board", ready=BOARD_LIVE)
    await regulator.visit(f"/board/cameras/{cid}", "board-camera", ready=PLAYING)
    await regulator.visit("/board/audit", "board-audit")

    phone_context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        phone = Visitor(await phone_context.new_page(), server)
        await phone.visit(f"/r/{rid}", "watch-phone", ready=WATCH_LIVE)
        overflow = await phone.page.evaluate(
            "() => document.scrollingElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"the watch page is {overflow}px wider than a phone"
    finally:
        await phone_context.close()

    problems = anonymous.problems + regulator.problems + phone.problems
    assert not problems, "\n".join(problems)
