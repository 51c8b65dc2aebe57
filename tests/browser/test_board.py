"""The regulators' board in a real Chromium: a camera's state change shows up live, through
the board's event stream, without a reload."""

from __future__ import annotations

from playwright.async_api import BrowserContext

from kitchencam.compliance.states import State
from kitchencam.wording import check_title
from tests.browser.support import Server, blocking, make_camera, regulator_page, shot

STATE_DEADLINE_MS = 30_000  # the relay's read timeout plus the checker's offline hold
RELOAD_MARK = "__kitchencamNotReloaded"

# The state's badge reads its words (kitchencam.wording), never the code.
ROW_STATE = """([cid, state, words]) => {
  const row = document.querySelector(`#board-rows tr[data-camera="${cid}"]`);
  return row !== null && row.dataset.state === state
    && row.querySelector('[data-field="state"]').textContent.trim() === words;
}"""


async def test_board_shows_a_state_change_live(
    context: BrowserContext, server: Server, name: str
) -> None:
    with make_camera() as cam:
        rid, token = await blocking(server.restaurant)
        cid = await blocking(server.camera, rid, token, cam.url, name="Board live test")
        page = await regulator_page(context, server)
        # Registered before the board loaded: its row is there from the start, whatever its state.
        await page.locator(f'#board-rows tr[data-camera="{cid}"]').wait_for()
        await page.wait_for_function(
            ROW_STATE, arg=[cid, "ok", check_title(State.OK)], timeout=STATE_DEADLINE_MS
        )
        await page.evaluate(f"() => {{ window.{RELOAD_MARK} = true; }}")
        await shot(page, name, "ok")

        await blocking(cam.stop)
        await page.wait_for_function(
            ROW_STATE, arg=[cid, "offline", check_title(State.OFFLINE)], timeout=STATE_DEADLINE_MS
        )
        assert await page.evaluate(f"() => window.{RELOAD_MARK} === true"), "the board reloaded"
        await shot(page, name, "offline")
