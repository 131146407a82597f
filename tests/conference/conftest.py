"""A unicomm server in the test's event loop, and room PCs in headless Chromium.

The server runs in-process (aiohttp's TestServer on 127.0.0.1) so a test can look
at the SFU's senders directly. ICE is allowed on loopback with the documented
``conference_ice_loopback`` setting.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, BrowserContext, Page
from support.browser import chromium

from conference.api import CONFERENCE_RUNTIME
from conference.runtime import ConferenceRuntime
from core import migrations
from core.config import load_settings
from core.context import AppContext
from core.models import Role
from core.web import SESSION_COOKIE, create_app

ROOM_PC_ARGS = [
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


@dataclass
class ConferenceServer:
    base_url: str
    app: web.Application
    ctx: AppContext

    @property
    def runtime(self) -> ConferenceRuntime:
        return self.app[CONFERENCE_RUNTIME]

    async def add_room(self, name: str, pin: str | None = None) -> None:
        from conference import service

        async with self.ctx.db.session() as session:
            await service.add_room(session, name, pin=pin)

    async def chair_cookie(self, username: str = "chair") -> dict[str, Any]:
        async with self.ctx.db.session() as session:
            user = await self.ctx.auth.create_user(
                session, username, "chair-pass-1", Role.DUTY_OFFICER
            )
        cookie, _ = await self.ctx.auth.open_session(user)
        return {"name": SESSION_COOKIE, "value": cookie, "url": self.base_url}


@pytest.fixture
async def conference_server(tmp_path: Path) -> AsyncIterator[ConferenceServer]:
    os.environ.pop("UNICOMM_CONFIG", None)
    settings = load_settings(
        None,
        data_dir=str(tmp_path / "var"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'unicomm.db'}",
        conference_ice_loopback=True,
        conference_peer_timeout=3.0,
        log_level="WARNING",
        sip_port=0,
        sip_tls_port=0,
    )
    await migrations.upgrade_async(settings.database_url)
    ctx = AppContext.create(settings)
    app = create_app(ctx)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield ConferenceServer(str(server.make_url("")).rstrip("/"), app, ctx)
    finally:
        await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium(ROOM_PC_ARGS) as launched:
        yield launched


async def open_room_pc(
    browser: Browser,
    base_url: str,
    room: str,
    venue: str,
    *,
    pin: str | None = None,
    role: str = "venue",
    cookie: dict[str, Any] | None = None,
) -> Page:
    """A room PC set up with the documented auto-join URL, at 320x240 to spare the CPU."""
    context: BrowserContext = await browser.new_context(locale="en-US")
    if cookie is not None:
        await context.add_cookies([cookie])
    page = await context.new_page()
    query = f"venue={venue}&role={role}&auto=1&width=320&height=240"
    if pin:
        query += f"&pin={pin}"
    await page.goto(f"{base_url}/conference/{room}?{query}")
    return page


async def slot_stats(page: Page) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = await page.evaluate("window.conference.slotStats()")
    return stats


def frames_by_venue(stats: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {s["venue"]: s["framesDecoded"] for s in stats.values() if s["venue"]}


async def eventually(
    check: Callable[[], Awaitable[Any]],
    within: float = 15.0,
    interval: float = 0.2,
    explain: Callable[[], Awaitable[Any]] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value.

    ``explain`` adds what the failure message should show besides the last value
    (the room PCs' connection states, for a picture that never arrived).
    """
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    context = f"; {await explain()!r}" if explain is not None else ""
    raise AssertionError(f"condition not met within {within}s; last value: {last!r}{context}")


async def describe_page(page: Page) -> dict[str, Any]:
    """The room PC's own account of its signalling, ICE and what each slot decodes."""
    if page.is_closed():
        return {"closed": True}
    try:
        described: dict[str, Any] = await page.evaluate("window.conference.describe()")
        described["slots"] = await slot_stats(page)
    except Exception as exc:  # a page mid-navigation cannot be asked; say so instead
        return {"unreadable": str(exc)}
    return described


class RoomPcTools:
    """The helpers above, handed to tests as a fixture (tests/ is not a package).

    It remembers the room PCs it opened, so a condition that is never met reports
    every PC's state and the server's side of each peer connection.
    """

    stats = staticmethod(slot_stats)
    frames_by_venue = staticmethod(frames_by_venue)

    def __init__(self) -> None:
        self.pages: list[tuple[str, Page]] = []
        self.runtime: ConferenceRuntime | None = None

    async def open(self, browser: Browser, base_url: str, room: str, venue: str, **kw: Any) -> Page:
        page = await open_room_pc(browser, base_url, room, venue, **kw)
        self.pages.append((venue, page))
        return page

    async def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {venue: await describe_page(page) for venue, page in self.pages}
        if self.runtime is not None:
            described["server"] = {
                f"{p.room}/{p.venue}": (p.peer.pc.connectionState, p.peer.pc.iceConnectionState)
                for p in self.runtime.by_connection.values()
                if p.peer is not None
            }
        return described

    async def eventually(
        self, check: Callable[[], Awaitable[Any]], within: float = 15.0, interval: float = 0.2
    ) -> Any:
        return await eventually(check, within, interval, explain=self.describe)


@pytest.fixture
def pcs(request: pytest.FixtureRequest) -> RoomPcTools:
    tools = RoomPcTools()
    if "conference_server" in request.fixturenames:
        tools.runtime = request.getfixturevalue("conference_server").runtime
    return tools
