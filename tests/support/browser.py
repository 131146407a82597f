"""Debian's Chromium, headless, driven by Playwright (no browser download)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Debian's chromium is not installed: run `make test`, which installs it")
    return path


@asynccontextmanager
async def chromium(extra_args: list[str] | None = None) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS + (extra_args or [])
        )
        try:
            yield browser
        finally:
            await browser.close()


async def wait_for_expression(
    page: Page, expression: str, *, seconds: float = 20.0, interval: float = 0.1
) -> None:
    """Poll a JavaScript expression from outside the page until it is truthy.

    Playwright's ``wait_for_function`` re-evaluates a string predicate with the
    page's ``eval``, which a strict Content-Security-Policy (the kiosk's) refuses
    as soon as the first check is false; ``page.evaluate`` is not bound by it.
    """
    deadline = asyncio.get_running_loop().time() + seconds
    while not await page.evaluate(expression):
        assert asyncio.get_running_loop().time() < deadline, f"never true: {expression}"
        await asyncio.sleep(interval)
