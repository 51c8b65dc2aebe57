"""Browser-side safety in a real Chromium: a form posted without its CSRF token is refused and
changes nothing; names with HTML in them are shown as text on every page that shows them."""

from __future__ import annotations

from playwright.async_api import BrowserContext, Page

from tests.browser.support import Server, blocking, regulator_page, shot, sign_up

REFUSAL = "This form has expired or did not come from KitchenCam"
PWNED = "__kitchencamPwned"
RESTAURANT_NAME = f'<b>Wok</b> & <img src=x onerror="window.{PWNED}=1"> Co'
CAMERA_NAME = f"<script>window.{PWNED}=1</script><i>Grill</i>"


async def drop_token_and_submit(page: Page, form: str, button: str) -> None:
    """Remove the form's CSRF field, as a forged cross-site form would lack it, and send it."""
    removed = await page.evaluate(
        "(sel) => { const f = document.querySelector(sel).querySelector('[name=csrf_token]');"
        " if (!f) return false; f.remove(); return true; }",
        form,
    )
    assert removed, f"{form} has no csrf_token field"
    await page.locator(form).get_by_role("button", name=button).click()


async def test_a_form_without_its_csrf_token_is_refused(
    page: Page, server: Server, name: str
) -> None:
    # Signed in: the add-camera form of the portal.
    await sign_up(page, server, "Token Test Kitchen")
    await page.goto(f"{server.base}/portal")
    await page.fill("#name", "Forged camera")
    await page.fill("#location", "nowhere")
    await page.fill("#url", "rtsp://127.0.0.1:9/live")
    await drop_token_and_submit(page, "form[action='/portal/cameras']", "Add camera")
    await page.get_by_text(REFUSAL).wait_for()
    await shot(page, name, "portal-refused")
    await page.goto(f"{server.base}/portal")
    assert await page.get_by_text("Forged camera").count() == 0, "the forged form added a camera"

    # Anonymous: the sign-in form (against login forgery).
    await page.context.clear_cookies()
    await page.goto(f"{server.base}/signin")
    await page.fill("#identity", "inspector")
    await page.fill("#password", "whatever it is")
    await drop_token_and_submit(page, "form[action='/signin']", "Sign in")
    await page.get_by_text(REFUSAL).wait_for()
    await shot(page, name, "signin-refused")


async def assert_shown_as_text(page: Page, *names: str) -> None:
    """Each name appears literally as text, no markup of it became an element, no script ran."""
    for name in names:
        assert await page.get_by_text(name).count() >= 1, f"{name!r} not shown as text"
    assert await page.locator("main b, main i, main img[src=x]").count() == 0
    assert await page.evaluate(f"() => window.{PWNED} === undefined"), "a name ran a script"


async def test_names_with_html_are_shown_as_text(
    page: Page,
    other_context: BrowserContext,
    server: Server,
    name: str,
) -> None:
    token = await sign_up(page, server, RESTAURANT_NAME)
    me = await blocking(server.api, "GET", "/api/v1/me", None, token)
    rid = me["id"]
    body = {"name": CAMERA_NAME, "location": "<u>pass</u>", "url": "rtsp://127.0.0.1:9/live"}
    cam = await blocking(server.api, "POST", f"/api/v1/restaurants/{rid}/cameras", body, token)

    await page.goto(f"{server.base}/portal")
    await assert_shown_as_text(page, CAMERA_NAME)
    await shot(page, name, "portal")
    await page.goto(f"{server.base}/portal/cameras/{cam['id']}")
    await assert_shown_as_text(page, CAMERA_NAME)
    await page.goto(f"{server.base}/r/{rid}")
    await page.locator(f'[data-camera="{cam["id"]}"]').wait_for()
    await assert_shown_as_text(page, RESTAURANT_NAME, CAMERA_NAME)
    await shot(page, name, "watch")

    board = await regulator_page(other_context, server)
    await board.locator(f'#board-rows tr[data-camera="{cam["id"]}"]').wait_for()
    await assert_shown_as_text(board, RESTAURANT_NAME, CAMERA_NAME)
    await board.goto(f"{server.base}/board/cameras/{cam['id']}")
    await assert_shown_as_text(board, CAMERA_NAME)
