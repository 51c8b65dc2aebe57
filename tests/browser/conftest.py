"""Fixtures for the real-browser tests: Debian's Chromium driven by Playwright against a real
``kitchencam serve`` process and a real RTSP camera, all on 127.0.0.1.

One server, one camera and one browser serve all the tests of this package and stop when they
end (its async tests share the session's event loop, which drives the browser); every test
gets a fresh browser context, and every page it opened is kept as a screenshot in
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.browser.support import (
    CHROMIUM_ARGS,
    VIEWPORT,
    Server,
    chromium_path,
    make_camera,
    running_server,
    screenshot_all,
)
from tests.support.camera import RtspCamera

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this directory's async tests on the session's loop, the one that owns the browser."""
    marker = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if pytest_asyncio.is_async_test(item) and HERE in Path(str(item.path)).parents:
            item.add_marker(marker, append=False)


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``kitchencam serve`` for these tests (see ``running_server``)."""
    with running_server(tmp_path_factory.mktemp("serve")) as running:
        yield running


@pytest.fixture(scope="package")
def camera() -> Iterator[RtspCamera]:
    """A live RTSP camera shared by these tests (tests that stop a camera use their
    own, from ``make_camera``)."""
    with make_camera() as cam:
        yield cam


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for these tests."""
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """The running test's name, safe in a file name (its screenshots are named after it)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser, name: str) -> AsyncIterator[BrowserContext]:
    """A fresh browser context (no cookies) for one test; each of its pages still open at the
    end is kept as ``test-artifacts/screenshots/<test>[-N].png``."""
    ctx = await browser.new_context(viewport=VIEWPORT)
    try:
        yield ctx
    finally:
        await screenshot_all(ctx, name)
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def other_context(browser: Browser, name: str) -> AsyncIterator[BrowserContext]:
    """A second fresh context in the same test (another person), kept as
    ``<test>-other[-N].png``."""
    ctx = await browser.new_context(viewport=VIEWPORT)
    try:
        yield ctx
    finally:
        await screenshot_all(ctx, name + "-other")
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> Page:
    """A page in the test's fresh context."""
    return await context.new_page()
