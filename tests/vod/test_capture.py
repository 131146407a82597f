"""Recording stations on a schedule window, over HTTP from a local ffmpeg "station"."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.servers import free_port
from test_transcode import check_hls_item
from vod_media import SEGMENT, LiveStation, files_under

from core.context import AppContext
from core.db import utcnow
from vod.models import Capture, CaptureState, Item, Kind, Level
from vod.runtime import VodRuntime
from vod.service import VodService


@pytest.fixture
def station() -> Iterator[LiveStation]:
    live = LiveStation(free_port())
    yield live
    live.stop()


@pytest.fixture
async def runtime(vod_context: AppContext, vod: VodService) -> AsyncIterator[VodRuntime]:
    running = VodRuntime(vod_context, vod)
    await running.start()
    yield running
    await running.stop()


async def add_station(vod: VodService, code: str, url: str, kind: Kind = Kind.TV) -> None:
    async with vod.db.session() as session:
        await vod.add_station(
            session, code=code, name=f"{code} 台", level=Level.CITY, kind=kind, stream_url=url
        )


async def book(vod: VodService, code: str, seconds: float, lead: float = 1.0) -> int:
    starts = utcnow() + dt.timedelta(seconds=lead)
    async with vod.db.session() as session:
        capture = await vod.book_capture(
            session,
            station_code=code,
            title="晚间新闻",
            starts_at=starts,
            ends_at=starts + dt.timedelta(seconds=seconds),
        )
        return capture.id


async def wait_for_capture(vod: VodService, capture_id: int, limit: float = 60) -> Capture:
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        async with vod.db.session() as session:
            capture = await session.get(Capture, capture_id)
            assert capture is not None
            if capture.state in (CaptureState.DONE, CaptureState.FAILED):
                return capture
        await asyncio.sleep(0.3)
    raise AssertionError("the capture did not finish")


async def wait_for_item(vod: VodService, limit: float = 60) -> Item:
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        async with vod.db.session() as session:
            item = await session.scalar(select(Item))
            if item is not None:
                return item
        await asyncio.sleep(0.3)
    raise AssertionError("no item appeared")


async def test_a_window_becomes_one_valid_programme(
    vod: VodService, runtime: VodRuntime, station: LiveStation
) -> None:
    station.start()
    await add_station(vod, "CITYTV", station.url)
    window = 6.0
    capture_id = await book(vod, "CITYTV", window)
    capture = await wait_for_capture(vod, capture_id)
    assert capture.state is CaptureState.DONE, capture.error
    item = await wait_for_item(vod)
    assert item.title == "晚间新闻"
    assert abs(item.duration_seconds - window) <= SEGMENT
    check_hls_item(vod.items / item.key, window, video=True)
    assert files_under(vod.work) == [] and files_under(vod.incoming) == []


async def test_a_stream_that_drops_and_returns_is_still_one_programme(
    vod: VodService, runtime: VodRuntime, station: LiveStation
) -> None:
    station.start()
    await add_station(vod, "CITYTV", station.url)
    capture_id = await book(vod, "CITYTV", 8.0)
    await asyncio.sleep(3.5)
    station.stop()  # the stream drops ...
    await asyncio.sleep(1.5)
    station.start()  # ... and comes back within the window
    capture = await wait_for_capture(vod, capture_id)
    assert capture.state is CaptureState.DONE, capture.error
    assert capture.parts >= 2
    item = await wait_for_item(vod)
    async with vod.db.session() as session:
        assert await session.scalar(select(func.count(Item.id))) == 1
    # Both halves are in it: more than the first part alone, less than the window.
    assert 4.0 <= item.duration_seconds <= 8.0 + SEGMENT
    check_hls_item(vod.items / item.key, item.duration_seconds, video=True)


async def test_radio_station_capture_is_audio_only(
    vod: VodService, runtime: VodRuntime, tmp_path: Path
) -> None:
    radio = LiveStation(free_port(), video=False).start()
    try:
        await add_station(vod, "CITYFM", radio.url, kind=Kind.RADIO)
        capture = await wait_for_capture(vod, await book(vod, "CITYFM", 5.0))
        assert capture.state is CaptureState.DONE, capture.error
        item = await wait_for_item(vod)
        master = check_hls_item(vod.items / item.key, 5.0, video=False)
        assert [v.codecs for v in master.variants] == ["mp4a.40.2"]
    finally:
        radio.stop()


async def test_a_stream_that_never_answers_fails_cleanly(
    vod: VodService, runtime: VodRuntime
) -> None:
    silent_port = free_port()  # nothing listens there
    await add_station(vod, "DEAD", f"http://127.0.0.1:{silent_port}/live.ts")
    capture = await wait_for_capture(vod, await book(vod, "DEAD", 3.0))
    assert capture.state is CaptureState.FAILED
    assert "never answered" in capture.error and "Connection refused" in capture.error
    async with vod.db.session() as session:
        assert await session.scalar(select(func.count(Item.id))) == 0
    assert files_under(vod.root) == []
