"""The chair records a meeting of two venues in headless Chromium; on stop the recording
reaches vod and, after its transcode, plays as HLS with picture and sound."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest
from playwright.async_api import Browser
from sqlalchemy import select

import vod
from vod.models import Item, Job, JobState

pytestmark = pytest.mark.browser

RECORD_SECONDS = 6.0


async def _send(page: Any, message: dict[str, Any]) -> None:
    await page.evaluate("m => window.conference.ws.send(JSON.stringify(m))", message)


async def test_chair_records_two_venues_and_vod_gets_a_playable_item(
    conference_server: Any, browser: Browser, pcs: Any
) -> None:
    await conference_server.add_room("rec", pin="8642")
    url = conference_server.base_url
    chair = await pcs.open(
        browser, url, "rec", "Chair", role="chair", cookie=await conference_server.chair_cookie()
    )
    east = await pcs.open(browser, url, "rec", "East", pin="8642")

    async def both_see_each_other() -> bool:
        chair_sees = pcs.frames_by_venue(await pcs.stats(chair)).get("East", 0)
        east_sees = pcs.frames_by_venue(await pcs.stats(east)).get("Chair", 0)
        return chair_sees > 5 and east_sees > 5

    await pcs.eventually(both_see_each_other, within=30)

    await chair.locator("#record-btn").click()
    await pcs.eventually(
        lambda: chair.evaluate("window.conference.roomEvent.recording === true"), within=5
    )
    # Every venue is told the room is being recorded.
    await pcs.eventually(lambda: east.locator("#recording-note").is_visible(), within=5)
    runtime = conference_server.runtime
    assert "rec" in runtime.recorders
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(RECORD_SECONDS / 2)
    # The main picture switches to East half way: the recording follows it.
    await _send(chair, {"type": "set_main", "venue": "East"})
    await asyncio.sleep(RECORD_SECONDS / 2)
    await chair.locator("#record-btn").click()
    recorded = asyncio.get_running_loop().time() - started
    await pcs.eventually(
        lambda: chair.evaluate("window.conference.roomEvent.recording === false"), within=5
    )
    # The SFU still encoded nothing: the recorder took the forwarded frames as they were.
    from conference.sfu import video_sender_checks

    for participant in runtime.by_connection.values():
        assert not any(c.encoder_opened for c in await video_sender_checks(participant.peer.pc))

    db = conference_server.ctx.db

    async def transcoded() -> Item | None:
        async with db.session() as session:
            failed = await session.scalar(select(Job).where(Job.state == JobState.FAILED))
            assert failed is None, failed.error
            return await session.scalar(select(Item))

    item = await pcs.eventually(transcoded, within=240, interval=1.0)
    assert item.title.startswith("rec ") and "meeting" in item.tags
    async with db.session() as session:
        job = await session.scalar(select(Job).where(Job.state == JobState.DONE))
        assert job is not None and job.origin == "conference"
    # Nothing of the recording is left in conference's own folder.
    assert not any(runtime.recordings_dir.rglob("*.*"))

    service = conference_server.app[vod.VOD].service
    master = service.items / item.key / "master.m3u8"
    probe = json.loads(
        await asyncio.to_thread(
            _run,
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", master],
        )
    )
    kinds = {s["codec_type"] for s in probe["streams"]}
    assert kinds >= {"video", "audio"}, kinds
    duration = float(probe["format"]["duration"])
    assert abs(duration - recorded) < 2.5, (duration, recorded)
    assert abs(item.duration_seconds - recorded) < 2.5, (item.duration_seconds, recorded)
    # Every frame decodes and the mixed sound is not silence (the fake microphone beeps).
    stats = await asyncio.to_thread(
        _run,
        [
            "ffmpeg",
            "-hide_banner",
            "-nostats",
            "-v",
            "info",
            "-i",
            master,
            "-map",
            "0:a:0",
            "-af",
            "volumedetect",
            "-map",
            "0:v:0",
            "-f",
            "null",
            "-",
        ],
        True,
    )
    mean = float(stats.split("mean_volume:")[1].split("dB")[0])
    assert mean > -50.0, stats


def _run(args: list[Any], stderr: bool = False) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=True
    )
    if stderr:
        return done.stderr
    return done.stdout
