"""Catalogue search (Chinese included) and retention, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from vod_media import vod_settings

from core import migrations
from core.context import AppContext
from vod import retention
from vod.models import Item, Kind, Level, Station
from vod.service import VodService, search_text

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


class Clock:
    """The injected clock: tests move it instead of waiting."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Disk:
    def __init__(self) -> None:
        self.usage = retention.DiskUsage(total_bytes=100_000, free_bytes=90_000)

    def __call__(self, path: Path) -> retention.DiskUsage:
        return self.usage


@pytest.fixture
async def ctx(database_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    settings = vod_settings(tmp_path, database_url, vod_disk_watermark_percent=10.0)
    await migrations.upgrade_async(settings.database_url)
    context = AppContext.create(settings)
    yield context
    await context.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def disk() -> Disk:
    return Disk()


@pytest.fixture
def vod(ctx: AppContext, clock: Clock, disk: Disk) -> VodService:
    return VodService(ctx.settings, ctx.db, ctx.state, ctx.secret, clock=clock, disk=disk)


async def stations(vod: VodService) -> None:
    async with vod.db.session() as session:
        await vod.add_station(
            session, code="CCTV", name="中央电视台", level=Level.CENTRAL, kind=Kind.TV
        )
        await vod.add_station(
            session,
            code="CITYFM",
            name="市人民广播电台",
            level=Level.CITY,
            kind=Kind.RADIO,
            retention_days=7,
        )


async def add_item(
    vod: VodService,
    station_code: str,
    title: str,
    days_ago: float,
    size: int = 1000,
    description: str = "",
    tags: list[str] | None = None,
) -> Item:
    """A catalogued item with files on disk, as a finished transcode leaves it."""
    broadcast = NOW - dt.timedelta(days=days_ago)
    async with vod.db.session() as session:
        station = await session.scalar(select(Station).where(Station.code == station_code))
        assert station is not None
        key = f"{abs(hash((title, days_ago))):032x}"[-32:]
        folder = vod.items / key
        (folder / "v0").mkdir(parents=True)
        (folder / "master.m3u8").write_text("#EXTM3U\n")
        (folder / "v0" / "seg00000.ts").write_bytes(b"\x47" * 188)
        item = Item(
            key=key,
            station_id=station.id,
            title=title,
            programme="",
            level=station.level,
            kind=station.kind,
            broadcast_at=broadcast,
            expires_at=retention.expires_at(broadcast, vod.retention_days(station)),
            duration_seconds=60.0,
            description=description,
            tags=tags or [],
            renditions=[],
            has_poster=False,
            thumbnails=0,
            size_bytes=size,
            views=0,
            search_text=search_text(title, station.name, description, " ".join(tags or [])),
        )
        session.add(item)
        await session.flush()
        await vod._index(session, item, station)
        return item


async def titles(vod: VodService, **filters: object) -> list[str]:
    async with vod.db.session() as session:
        return [v.title for v in await vod.catalogue(session, **filters)]  # type: ignore[arg-type]


async def test_search_finds_chinese_and_english_words(vod: VodService) -> None:
    await stations(vod)
    await add_item(vod, "CCTV", "新闻联播", 1, tags=["要闻"])
    await add_item(vod, "CCTV", "天气预报", 1, description="明天全市有雨")
    await add_item(vod, "CITYFM", "城市早新闻", 2, description="Traffic and weather")
    await add_item(vod, "CITYFM", "100% 音乐_节目", 3)
    assert sorted(await titles(vod, query="新闻")) == ["城市早新闻", "新闻联播"]  # two characters
    assert await titles(vod, query="新闻联播") == ["新闻联播"]  # the trigram index
    assert await titles(vod, query="全市有雨") == ["天气预报"]  # in the description
    assert await titles(vod, query="要闻") == ["新闻联播"]  # a tag
    assert await titles(vod, query="WEATHER") == ["城市早新闻"]  # case-insensitive
    assert await titles(vod, query="人民广播") == ["城市早新闻", "100% 音乐_节目"]  # station name
    assert await titles(vod, query="早 traffic") == ["城市早新闻"]  # every term must match
    assert await titles(vod, query="100%") == ["100% 音乐_节目"]  # LIKE wildcards are literal
    assert await titles(vod, query="%") == ["100% 音乐_节目"]
    assert await titles(vod, query='"') == []
    assert await titles(vod, query="体育") == []


async def test_browse_by_date_and_station(vod: VodService) -> None:
    await stations(vod)
    await add_item(vod, "CCTV", "today", 0)
    await add_item(vod, "CCTV", "yesterday", 1)
    await add_item(vod, "CITYFM", "radio yesterday", 1)
    beijing_today = NOW.astimezone(vod.zone).date()
    assert await titles(vod, day=beijing_today) == ["today"]
    assert sorted(await titles(vod, day=beijing_today - dt.timedelta(days=1))) == [
        "radio yesterday",
        "yesterday",
    ]
    assert await titles(vod, station_code="CITYFM") == ["radio yesterday"]
    assert await titles(vod, kind=Kind.RADIO, level=Level.CITY) == ["radio yesterday"]
    async with vod.db.session() as session:
        days = await vod.days_with_items(session)
    assert days == [beijing_today, beijing_today - dt.timedelta(days=1)]


async def test_day_31_goes_with_its_files_and_day_29_stays(vod: VodService, clock: Clock) -> None:
    await stations(vod)
    old = await add_item(vod, "CCTV", "day 31", 31)
    kept = await add_item(vod, "CCTV", "day 29", 29)
    radio = await add_item(vod, "CITYFM", "radio day 8", 8)  # this station keeps 7 days
    report = await vod.sweep()
    assert sorted(report.expired) == sorted([old.id, radio.id])
    assert await titles(vod) == ["day 29"]
    assert not (vod.items / old.key).exists() and not (vod.items / radio.key).exists()
    assert (vod.items / kept.key / "master.m3u8").exists()
    # Two days later the day-29 item reaches day 31 too.
    clock.now = NOW + dt.timedelta(days=2)
    assert (await vod.sweep()).expired == [kept.id]
    assert list(vod.items.iterdir()) == []
    async with vod.db.session() as session:
        assert await session.scalar(select(func.count(Item.id))) == 0


async def test_an_item_being_played_is_kept_until_playback_stops(vod: VodService) -> None:
    await stations(vod)
    playing = await add_item(vod, "CCTV", "still watched", 40)
    await vod.mark_playing(playing.key)
    report = await vod.sweep()
    assert report.expired == [] and report.skipped_busy == [playing.id]
    assert (vod.items / playing.key).exists()
    await vod.state.delete(f"vod:playing:{playing.key}")  # playback stopped (TTL ran out)
    assert (await vod.sweep()).expired == [playing.id]


async def test_disk_watermark_purges_oldest_first(vod: VodService, disk: Disk) -> None:
    await stations(vod)
    oldest = await add_item(vod, "CCTV", "oldest", 20, size=3000)
    older = await add_item(vod, "CCTV", "older", 10, size=3000)
    newer = await add_item(vod, "CCTV", "newer", 5, size=3000)
    newest = await add_item(vod, "CCTV", "newest", 1, size=3000)
    disk.usage = retention.DiskUsage(total_bytes=100_000, free_bytes=6_000)  # 6 % free, want 10
    report = await vod.sweep()
    assert report.for_disk == [oldest.id, older.id]
    assert await titles(vod) == ["newest", "newer"]
    assert not (vod.items / oldest.key).exists() and (vod.items / newer.key).exists()
    assert newest.id not in report.deleted


async def test_orphans_are_removed_but_fresh_folders_left_alone(
    vod: VodService, clock: Clock
) -> None:
    import os

    await stations(vod)
    listed = await add_item(vod, "CCTV", "listed", 1)
    orphan = vod.items / ("a" * 32)
    orphan.mkdir()
    (orphan / "master.m3u8").write_text("#EXTM3U\n")
    old = (NOW - dt.timedelta(hours=1)).timestamp()
    os.utime(orphan, (old, old))
    fresh = vod.items / ("b" * 32)  # maybe an item whose row is being committed right now
    fresh.mkdir()
    os.utime(fresh, (NOW.timestamp(), NOW.timestamp()))
    report = await vod.sweep()
    assert report.orphans == ["a" * 32]
    assert fresh.exists() and (vod.items / listed.key).exists()
