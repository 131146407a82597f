"""vod's narrow interface for conference: a meeting recording becomes a queued job, then
an item of the meeting-recordings station; a file vod refuses is a ValueError."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from aiohttp import web
from conftest import Staff
from test_api import wait_job

import vod


async def test_a_recording_is_queued_under_the_meeting_station(
    staff: Staff, tv_clip: Path, tmp_path: Path
) -> None:
    app = staff.client.app
    assert app is not None
    when = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
    job_id = await vod.import_recording(app, tv_clip, title="常务会议 weekly", broadcast_at=when)
    assert await asyncio.to_thread(tv_clip.is_file)  # copied in: the caller deletes its own
    assert (await wait_job(staff, job_id))["state"] == "done"
    items = await (await staff.client.get("/api/vod/items", headers=staff.viewer)).json()
    (item,) = items
    assert item["title"] == "常务会议 weekly" and item["station"] == vod.MEETING_STATION
    # The station exists once, however many recordings follow.
    second = await vod.import_recording(app, tv_clip, title="second")
    assert second != job_id

    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not media at all")
    with pytest.raises(ValueError):
        await vod.import_recording(app, junk, title="junk")
    with pytest.raises(LookupError):
        await vod.import_recording(web.Application(), tv_clip, title="no vod")
