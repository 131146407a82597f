"""Bad signalling is refused with an error event while the room carries on; a room PC
that vanishes without a goodbye is removed after the heartbeat timeout."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser
from support.browser import chromium

pytestmark = pytest.mark.browser

VANISH_MARKER = "--unicomm-test-vanishing-room-pc"


async def _next_error(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(ws.receive_json(), 5)
        if message["type"] == "error":
            return dict(message)


async def test_malformed_and_unauthenticated_messages_get_error_events(
    conference_server: Any, browser: Browser, pcs: Any
) -> None:
    await conference_server.add_room("r3", pin="2468")
    url = conference_server.base_url
    room_pc = await pcs.open(browser, url, "r3", "North", pin="2468")
    other = await pcs.open(browser, url, "r3", "South", pin="2468")

    async def north_decodes_south() -> int:
        return int(pcs.frames_by_venue(await pcs.stats(room_pc)).get("South", 0))

    await pcs.eventually(north_decodes_south, within=30)

    ws_url = url.replace("http", "ws") + "/signaling/conference"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_str("{not json")
        assert (await _next_error(ws))["code"] == "malformed"
        await ws.send_json({"type": "join", "room": "r3", "venue": "Intruder"})
        refused = await _next_error(ws)
        assert (refused["code"], refused["ref"]) == ("unauthenticated", "join")
        await ws.send_json({"type": "join", "room": "r3", "venue": "Intruder", "pin": "0000"})
        assert (await _next_error(ws))["code"] == "unauthenticated"
        await ws.send_json({"type": "remove_venue", "venue": "North"})
        assert (await _next_error(ws))["code"] == "unauthenticated"
        await ws.send_json({"type": "join", "room": "r3", "venue": "Cheeky", "role": "chair"})
        assert (await _next_error(ws))["code"] == "forbidden"
        await ws.send_json({"type": "mute_venue", "venue": "North", "muted": "yes please"})
        invalid = await _next_error(ws)
        assert invalid["code"] == "invalid" and invalid["detail"][0]["field"].endswith("muted")
        # The same socket may still join properly: one bad message does not end it.
        await ws.send_json({"type": "join", "room": "r3", "venue": "Guest", "pin": "2468"})
        joined = await asyncio.wait_for(ws.receive_json(), 5)
        assert joined["type"] == "joined"
        await ws.send_json({"type": "lock_room", "locked": True})  # not the chair
        assert (await _next_error(ws))["code"] == "forbidden"

    # A venue that sends garbage from its own page gets an error event and stays.
    await other.evaluate('window.conference.ws.send(\'{"type": "set_main"}\')')
    await pcs.eventually(
        lambda: other.evaluate("window.conference.errors.some(e => e.code === 'invalid')"), within=5
    )
    before = await north_decodes_south()
    await asyncio.sleep(1.0)
    assert await north_decodes_south() > before
    assert set(conference_server.runtime.rooms["r3"].members) == {"North", "South"}


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _browser_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if VANISH_MARKER.encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError("the vanishing browser's process was not found")


async def test_a_room_pc_that_vanishes_is_removed_after_the_timeout(
    conference_server: Any, browser: Browser, pcs: Any
) -> None:
    await conference_server.add_room("r4", pin="1357")
    url = conference_server.base_url
    stays = await pcs.open(browser, url, "r4", "Stays", pin="1357")
    state = conference_server.runtime.ctx.state
    async with chromium([VANISH_MARKER, "--disable-features=WebRtcHideLocalIpsWithMdns"]) as doomed:
        await pcs.open(doomed, url, "r4", "Vanishes", pin="1357")
        await pcs.eventually(lambda: _decodes_any(stays, "Vanishes", pcs), within=30)
        assert set(await state.hgetall("conference:presence:r4")) == {"Stays", "Vanishes"}
        # Freeze the whole browser: no goodbye, no TCP close, no heartbeat answer (a power cut).
        frozen = _descendants(_browser_pid())
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = asyncio.get_running_loop().time()
            await pcs.eventually(
                lambda: _gone(conference_server, "r4", "Vanishes"), within=15, interval=0.1
            )
            elapsed = asyncio.get_running_loop().time() - started
        finally:
            for pid in frozen:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
    # peer timeout 3 s in these tests: the hub pings every 2 s and gives a pong 1 s, so a
    # browser frozen just after a ping is gone after 1 s, one frozen just after its pong
    # after 3 s (plus load): never at once, never much after the timeout.
    assert 1.0 <= elapsed <= 8.0, elapsed
    assert set(await state.hgetall("conference:presence:r4")) == {"Stays"}
    layout = await stays.evaluate("window.conference.roomEvent.venues.map(v => v.venue)")
    assert layout == ["Stays"]


async def _decodes_any(page: Any, venue: str, pcs: Any) -> bool:
    return bool(pcs.frames_by_venue(await pcs.stats(page)).get(venue, 0) > 5)


async def _gone(server: Any, room: str, venue: str) -> bool:
    return venue not in server.runtime.rooms[room].members
