"""Room PCs in headless Chromium (fake camera and microphone) against the forwarding SFU."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from conference.sfu import video_sender_checks

pytestmark = pytest.mark.browser

# The late joiner's first frame, measured in the page from "connected" on.
FIRST_FRAME_JS = """
async () => {
  const c = window.conference;
  while (!c.pc || c.pc.connectionState !== "connected") await new Promise(r => setTimeout(r, 10));
  const connected = performance.now();
  for (;;) {
    const stats = await c.slotStats();
    if (stats[0] && stats[0].framesDecoded > 0) return (performance.now() - connected) / 1000;
    await new Promise(r => setTimeout(r, 20));
  }
}
"""


async def decoded_from(page: Page, pcs: Any) -> dict[str, int]:
    result: dict[str, int] = pcs.frames_by_venue(await pcs.stats(page))
    return result


async def test_three_venues_decode_each_other_and_a_late_fourth_sees_video_within_a_second(
    conference_server: Any, browser: Browser, pcs: Any
) -> None:
    await conference_server.add_room("r1", pin="1234")
    url = conference_server.base_url
    pages = {v: await pcs.open(browser, url, "r1", v, pin="1234") for v in ("A", "B", "C")}

    async def everyone_decodes_the_others() -> dict[str, dict[str, int]] | None:
        seen = {venue: await decoded_from(page, pcs) for venue, page in pages.items()}
        for venue, frames in seen.items():
            others = {v for v in pages if v != venue}
            if not others <= {v for v, n in frames.items() if n > 10}:
                return None
        return seen

    first = await pcs.eventually(everyone_decodes_the_others, within=45)
    await asyncio.sleep(1.0)
    later = await everyone_decodes_the_others()
    assert later is not None
    for venue, frames in first.items():
        for other, count in frames.items():
            assert later[venue][other] > count, f"{venue} stopped decoding {other}"

    # The SFU forwarded the publishers' frames: no video sender ever opened an encoder.
    checks = [
        check
        for participant in conference_server.runtime.by_connection.values()
        for check in await video_sender_checks(participant.peer.pc)
    ]
    active = [c for c in checks if c.packets_sent > 0]
    assert len(active) >= 6  # each of three venues sends two pictures on
    assert all(c.frames_forwarded > 0 for c in active)
    assert not any(c.encoder_opened for c in checks)

    late = await pcs.open(browser, url, "r1", "D", pin="1234")
    first_frame_seconds = await late.evaluate(FIRST_FRAME_JS)
    assert first_frame_seconds < 1.0, f"late joiner's first frame after {first_frame_seconds:.2f}s"


async def test_chair_mutes_a_venue_and_its_audio_stops_at_the_others(
    conference_server: Any, browser: Browser, pcs: Any
) -> None:
    await conference_server.add_room("r2", pin="5678")
    url = conference_server.base_url
    chair = await pcs.open(
        browser, url, "r2", "Chair", role="chair", cookie=await conference_server.chair_cookie()
    )
    loud = await pcs.open(browser, url, "r2", "East", pin="5678")
    listener = await pcs.open(browser, url, "r2", "West", pin="5678")

    async def audio_from_east() -> int:
        for slot in (await pcs.stats(listener)).values():
            if slot["venue"] == "East":
                return int(slot["audioPackets"])
        return 0

    await pcs.eventually(lambda: _above(audio_from_east, 50), within=30)
    await chair.locator('li[data-venue="East"] button.mute-venue').click()
    await pcs.eventually(lambda: _flag(loud, "window.conference.chairMuted"), within=5)
    await asyncio.sleep(0.5)  # packets already on the wire
    before = await audio_from_east()
    await asyncio.sleep(1.5)
    assert await audio_from_east() - before <= 2, "muted venue's audio still reaches others"
    # ... and comes back when the chair unmutes it.
    await chair.locator('li[data-venue="East"] button.mute-venue').click()
    resumed = before + 20
    await pcs.eventually(lambda: _above(audio_from_east, resumed), within=10)


async def test_command_room_pulls_a_venue_and_pushes_its_picture(
    conference_server: Any, browser: Browser, pcs: Any
) -> None:
    await conference_server.add_room("m1", pin="1111")
    url = conference_server.base_url
    chief = await pcs.open(
        browser,
        url,
        "command",
        "Chief",
        role="chair",
        cookie=await conference_server.chair_cookie("chief"),
    )
    harbour = await pcs.open(browser, url, "m1", "Harbour", pin="1111")
    station = await pcs.open(browser, url, "m1", "Station", pin="1111")
    await pcs.eventually(lambda: _decodes(station, "Harbour", pcs), within=30)

    # Push: the meeting's venues see the command room's picture in the main slot.
    await chief.evaluate("window.conference.send({type: 'push_picture', room: 'm1', on: true})")
    await pcs.eventually(lambda: _main_is(station, "command", "Chief"), within=10)
    await pcs.eventually(lambda: _decodes(station, "Chief", pcs), within=10)

    # Pull: Harbour moves into the command room; the chief sees it, it sees the chief.
    await chief.fill("#pull-room", "m1")
    await chief.fill("#pull-venue", "Harbour")
    await chief.click("#pull-btn")
    await pcs.eventually(lambda: _flag(harbour, "window.conference.room === 'command'"), within=10)
    await pcs.eventually(lambda: _decodes(chief, "Harbour", pcs), within=15)
    await pcs.eventually(lambda: _decodes(harbour, "Chief", pcs), within=15)
    presence = await conference_server.runtime.ctx.state.hgetall("conference:presence:command")
    assert set(presence) == {"Chief", "Harbour"}
    assert "Harbour" not in await conference_server.runtime.ctx.state.hgetall(
        "conference:presence:m1"
    )
    guests = await chief.locator('li[data-venue="Harbour"]').inner_text()
    assert "(m1)" in guests


async def _above(read: Any, threshold: int) -> bool:
    return bool(await read() > threshold)


async def _flag(page: Page, expression: str) -> bool:
    return bool(await page.evaluate(expression))


async def _decodes(page: Page, venue: str, pcs: Any) -> bool:
    first = (await decoded_from(page, pcs)).get(venue, 0)
    if first == 0:
        return False
    await asyncio.sleep(0.3)
    return (await decoded_from(page, pcs)).get(venue, 0) > first


async def _main_is(page: Page, room: str, venue: str) -> bool:
    layout = await page.evaluate("window.conference.layout")
    return bool(layout) and layout[0]["room"] == room and layout[0]["venue"] == venue
