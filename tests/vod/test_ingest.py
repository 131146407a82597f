"""The watch folder, daily schedules turned into capture windows, and the job limit."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from pathlib import Path

from sqlalchemy import select
from vod_media import files_under, make_clip

from core.context import AppContext
from vod.models import Capture, CaptureState, Item, Job, JobState, Kind, Level
from vod.runtime import VodRuntime
from vod.service import VodService


async def stations(vod: VodService) -> None:
    async with vod.db.session() as session:
        await vod.add_station(
            session,
            code="CCTV",
            name="中央电视台",
            level=Level.CENTRAL,
            kind=Kind.TV,
            stream_url="udp://239.0.0.1:1234",
        )


def drop(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


async def test_watch_folder_takes_finished_files_and_rejects_bad_ones(
    vod_context: AppContext, vod: VodService, tv_clip: Path, tmp_path: Path
) -> None:
    await stations(vod)
    runtime = VodRuntime(vod_context, vod)
    watch = tmp_path / "watch"
    await asyncio.to_thread(drop, tv_clip, watch / "CCTV" / "20261120-1900 新闻联播.mp4")
    await asyncio.to_thread(drop, tv_clip, watch / "NOPE" / "unknown station.mp4")
    (watch / "CCTV" / "notes.txt").write_text("not media")  # not a media suffix: ignored
    (watch / "CCTV" / "broken.ts").write_bytes(b"\x00" * 5000)

    # First scan only notes sizes: a file still being copied is not taken.
    assert await runtime.scan_watch_folder(watch) == []
    queued = await runtime.scan_watch_folder(watch)
    assert len(queued) == 1
    async with vod.db.session() as session:
        job = await session.get(Job, queued[0])
        assert job is not None
        assert job.title == "新闻联播" and job.origin == "watch"
        assert job.broadcast_at.replace(tzinfo=dt.UTC) == dt.datetime(
            2026, 11, 20, 11, 0, tzinfo=dt.UTC
        )
    rejected = sorted(p.name for p in (watch / "rejected").iterdir())
    assert rejected == ["broken.ts.error.txt", "unknown station.mp4.error.txt"]
    assert "no station 'NOPE'" in (watch / "rejected" / "unknown station.mp4.error.txt").read_text()
    assert sorted(p.name for p in files_under(watch)) == sorted([*rejected, "notes.txt"])
    # Only the accepted file waits in incoming/ for its transcode.
    assert len(files_under(vod.incoming)) == 1


async def test_daily_schedule_becomes_capture_windows_once(
    vod_context: AppContext, tmp_path: Path
) -> None:
    now = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)  # 18:00 in Beijing
    settings = vod_context.settings
    vod = VodService(settings, vod_context.db, vod_context.state, "s", clock=lambda: now)
    await stations(vod)
    async with vod.db.session() as session:
        await vod.add_schedule(
            session,
            station_code="CCTV",
            programme="新闻联播",
            start_time="19:00",
            duration_seconds=1800,
        )
    assert await vod.plan_captures() == 2  # today's and tomorrow's
    assert await vod.plan_captures() == 0  # planning again (or on another node) adds none
    async with vod.db.session() as session:
        captures = (await session.scalars(select(Capture).order_by(Capture.starts_at))).all()
    assert [c.title for c in captures] == ["新闻联播 2026-11-21", "新闻联播 2026-11-22"]
    assert captures[0].starts_at.replace(tzinfo=dt.UTC) == dt.datetime(
        2026, 11, 21, 11, 0, tzinfo=dt.UTC
    )


async def test_at_most_max_jobs_transcode_at_once(
    vod_context: AppContext, vod: VodService, tv_clip: Path
) -> None:
    await stations(vod)
    assert vod_context.settings.vod_max_jobs == 1
    for n in range(3):
        await vod.import_file(tv_clip, station_code="CCTV", title=f"第{n}条", origin="cli")
    runtime = VodRuntime(vod_context, vod)
    await runtime.start()
    most_running = 0
    try:
        deadline = asyncio.get_running_loop().time() + 90
        while asyncio.get_running_loop().time() < deadline:
            async with vod.db.session() as session:
                states = [j.state for j in (await session.scalars(select(Job))).all()]
            most_running = max(most_running, states.count(JobState.RUNNING))
            if all(s is JobState.DONE for s in states):
                break
            await asyncio.sleep(0.05)
    finally:
        await runtime.stop()
    assert most_running == 1
    async with vod.db.session() as session:
        assert len((await session.scalars(select(Item))).all()) == 3


async def test_recordings_cut_off_by_a_restart_are_finished_or_marked_missed(
    vod_context: AppContext, vod: VodService, tmp_path: Path
) -> None:
    await stations(vod)
    now = dt.datetime.now(dt.UTC)
    async with vod.db.session() as session:
        station_id = (await vod.station(session, "CCTV")).id
        cut = Capture(
            station_id=station_id,
            title="被打断的录制",
            programme="",
            starts_at=now - dt.timedelta(seconds=20),
            ends_at=now - dt.timedelta(seconds=5),
            state=CaptureState.RECORDING,
            node="old-1",
            parts=0,
            error="",
        )
        missed = Capture(
            station_id=station_id,
            title="错过的录制",
            programme="",
            starts_at=now - dt.timedelta(minutes=40),
            ends_at=now - dt.timedelta(minutes=10),
            state=CaptureState.SCHEDULED,
            node="",
            parts=0,
            error="",
        )
        session.add_all([cut, missed])
    # What the killed server had recorded so far.
    parts = vod.work / f"capture-{cut.id}"
    parts.mkdir(parents=True)
    await asyncio.to_thread(make_clip, parts / "part000.ts", 4.0)

    runtime = VodRuntime(vod_context, vod)
    await runtime.recover_captures()
    await runtime.start_due_captures()
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        async with vod.db.session() as session:
            rows = {c.id: c for c in (await session.scalars(select(Capture))).all()}
        if all(c.state in (CaptureState.DONE, CaptureState.FAILED) for c in rows.values()):
            break
        await asyncio.sleep(0.2)
    assert rows[cut.id].state is CaptureState.DONE and rows[cut.id].job_id is not None
    assert rows[missed.id].state is CaptureState.FAILED
    assert rows[missed.id].error.startswith("missed")
    assert not parts.exists()
