"""News on demand logic, free of HTTP: stations, ingest, the job queue, the
catalogue, retention and media URLs.

Files live under ``data_dir/vod``::

    incoming/          sources waiting for (or in) a transcode, owned by a job row
    work/job-<id>/     a transcode in progress: never served, removed on failure
    work/capture-<id>/ the parts of a recording in progress
    items/<key>/       a finished item: master.m3u8, v0/ v1/ ... or a0/, poster, thumbs

An item's folder is complete before its row is committed (rename, then insert),
and its row is deleted before its folder, so the catalogue never lists a missing
file; a crash between the two leaves at most an unlisted folder, which the
sweeper removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.db import Database, utcnow
from core.state import SharedState
from media import ffmpeg, hls
from vod import retention, serving, windows
from vod.metrics import VodMetrics
from vod.models import Capture, CaptureState, Item, Job, JobState, Kind, Level, Schedule, Station
from vod.stations import StationError, StationInput, check_code

log = structlog.get_logger("vod")

CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
KEY = re.compile(r"^[0-9a-f]{32}$")
MEDIA_PATH = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.[a-z0-9]+$")
MAX_ATTEMPTS = 2
# A running job whose node has not written for this long is presumed dead.
STALE_JOB = dt.timedelta(minutes=2)
# How long a served item counts as "being played" after its last request.
PLAYING_SECONDS = 90.0
# Unlisted folders younger than this may be an item whose row is being committed.
ORPHAN_GRACE = dt.timedelta(minutes=10)
CAPTURE_RETRY_SECONDS = 1.0
UPLOAD_CHUNK = 1024 * 1024


class VodError(Exception):
    """A refusal fit to show: ``status`` is the HTTP status an API answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ItemView:
    id: int
    key: str
    title: str
    programme: str
    station: str
    station_name: str
    level: Level
    kind: Kind
    broadcast_at: dt.datetime
    expires_at: dt.datetime
    duration_seconds: float
    description: str
    tags: list[str]
    renditions: list[dict[str, Any]]
    has_poster: bool
    thumbnails: int
    views: int


@dataclass
class SweepReport:
    expired: list[int] = field(default_factory=list)
    for_disk: list[int] = field(default_factory=list)
    skipped_busy: list[int] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> list[int]:
        return self.expired + self.for_disk


def as_utc(value: dt.datetime) -> dt.datetime:
    # SQLite gives naive datetimes back; everything stored is UTC.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def search_text(*parts: str) -> str:
    return " ".join(part.strip().lower() for part in parts if part and part.strip())


def normalise_tags(tags: list[str] | str) -> list[str]:
    items = tags.split(",") if isinstance(tags, str) else tags
    seen: list[str] = []
    for tag in (t.strip() for t in items):
        if tag and tag not in seen:
            seen.append(tag[:50])
    return seen[:20]


def discard(path: str | Path) -> None:
    """Remove a file if it is there (one cheap local syscall; big trees go to a thread)."""
    Path(path).unlink(missing_ok=True)


def is_file(path: str | Path) -> bool:
    return Path(path).is_file()


def disk_usage(path: Path) -> retention.DiskUsage:
    usage = shutil.disk_usage(path)
    return retention.DiskUsage(total_bytes=usage.total, free_bytes=usage.free)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class VodService:
    """The whole service for one process; the web app and the CLI each hold one."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        state: SharedState,
        secret: str,
        *,
        node: str = "",
        clock: Callable[[], dt.datetime] = utcnow,
        disk: Callable[[Path], retention.DiskUsage] = disk_usage,
    ) -> None:
        self.settings = settings
        self.db = db
        self.state = state
        self.secret = secret.encode()
        # Host (or configured node name) and pid: start-up recovery can tell a dead
        # process of this host from a live one (say, a CLI import running now).
        self.node = node or f"{settings.node_name or os.uname().nodename}-{os.getpid()}"
        self.clock = clock
        self.disk = disk
        self.zone = settings.zone
        self.root = settings.path("vod")
        self.incoming = self.root / "incoming"
        self.work = self.root / "work"
        self.items = self.root / "items"
        for folder in (self.incoming, self.work, self.items):
            folder.mkdir(parents=True, exist_ok=True)
        self.job_added = asyncio.Event()
        self._playing_marked: dict[str, float] = {}
        self._signatures = serving.SignatureCache()
        self._items_prefix = f"{self.items}/"
        self.responder = serving.MediaResponder()
        # Set by the server's runtime (the CLI counts nothing).
        self.metrics: VodMetrics | None = None

    def _changed(self) -> None:
        """Jobs or items changed here: the database-read gauges refresh now."""
        if self.metrics is not None:
            self.metrics.nudge()

    # ---- stations and schedules -------------------------------------------------

    async def add_station(
        self,
        session: AsyncSession,
        *,
        code: str,
        name: str,
        level: Level,
        kind: Kind,
        stream_url: str = "",
        retention_days: int | None = None,
    ) -> Station:
        if not CODE.match(code):
            raise VodError("station code must be 1-32 letters, digits, '-' or '_'")
        if not name.strip():
            raise VodError("station name must not be empty")
        if retention_days is not None and retention_days < 1:
            raise VodError("retention must be at least one day")
        if await session.scalar(select(Station).where(Station.code == code)):
            raise VodError(f"station {code!r} already exists", 409)
        station = Station(
            code=code,
            name=name.strip(),
            level=level,
            kind=kind,
            stream_url=stream_url.strip(),
            retention_days=retention_days,
            enabled=True,
        )
        session.add(station)
        await session.flush()
        return station

    async def station(self, session: AsyncSession, code: str) -> Station:
        station = await session.scalar(select(Station).where(Station.code == code))
        if station is None:
            raise VodError(f"no station {code!r}", 404)
        return station

    async def list_stations(self, session: AsyncSession) -> list[Station]:
        return list((await session.scalars(select(Station).order_by(Station.code))).all())

    def retention_days(self, station: Station) -> int:
        return station.retention_days or self.settings.vod_retention_days

    async def set_retention(
        self, session: AsyncSession, code: str, retention_days: int | None
    ) -> Station:
        """Change a station's retention; its existing items follow the new rule."""
        station = await self.station(session, code)
        if retention_days is not None and retention_days < 1:
            raise VodError("retention must be at least one day")
        station.retention_days = retention_days
        days = self.retention_days(station)
        for item in await session.scalars(select(Item).where(Item.station_id == station.id)):
            item.expires_at = retention.expires_at(as_utc(item.broadcast_at), days)
        return station

    async def save_station(
        self, session: AsyncSession, code: str, data: StationInput, *, create: bool
    ) -> Station:
        """Create a station or change one, with its daily capture windows, as one change.

        Existing items follow a new level, kind or retention; removed windows take their
        planned, not yet started recordings with them (a recording in progress finishes).
        """
        code = check_code(code)
        station = await session.scalar(select(Station).where(Station.code == code))
        if create and station is not None:
            raise StationError("station_exists", "code", 409, code=code)
        if not create and station is None:
            raise StationError("station_unknown", "code", 404, code=code)
        if station is None:
            station = Station(code=code, created_at=self.clock())
            session.add(station)
        station.name = data.name
        station.level, station.kind = data.level, data.kind
        station.stream_url = data.stream_url
        station.enabled = data.enabled
        station.retention_days = data.retention_days
        await session.flush()
        if not create:
            days = self.retention_days(station)
            for item in await session.scalars(select(Item).where(Item.station_id == station.id)):
                item.level, item.kind = data.level, data.kind
                item.expires_at = retention.expires_at(as_utc(item.broadcast_at), days)
        await self._replace_windows(session, station, data)
        return station

    async def _replace_windows(
        self, session: AsyncSession, station: Station, data: StationInput
    ) -> None:
        wanted = {
            (w.start_time, w.duration_seconds, w.weekdays, w.programme or station.name): w
            for w in data.windows
        }
        existing = (
            await session.scalars(select(Schedule).where(Schedule.station_id == station.id))
        ).all()
        removed = []
        for schedule in existing:
            key = (
                schedule.start_time,
                schedule.duration_seconds,
                schedule.weekdays,
                schedule.programme,
            )
            if key in wanted and schedule.enabled:
                del wanted[key]  # unchanged: its planned recordings stay
            else:
                removed.append(schedule.id)
        dropped = set(removed)
        if not data.enabled:
            dropped |= {s.id for s in existing}
        if dropped:
            await session.execute(
                delete(Capture).where(
                    Capture.schedule_id.in_(dropped),
                    Capture.state == CaptureState.SCHEDULED,
                )
            )
        if removed:
            await session.execute(delete(Schedule).where(Schedule.id.in_(removed)))
        for (start, duration, weekdays, programme), _ in wanted.items():
            session.add(
                Schedule(
                    station_id=station.id,
                    programme=programme,
                    start_time=start,
                    duration_seconds=duration,
                    weekdays=weekdays,
                    enabled=True,
                )
            )
        await session.flush()

    async def station_windows(self, session: AsyncSession) -> dict[int, list[Schedule]]:
        """Each station's daily capture windows, by station id, in time order."""
        rows = await session.scalars(select(Schedule).order_by(Schedule.start_time, Schedule.id))
        found: dict[int, list[Schedule]] = {}
        for schedule in rows:
            found.setdefault(schedule.station_id, []).append(schedule)
        return found

    async def delete_station(self, session: AsyncSession, code: str) -> None:
        """Remove a station with no programmes and no transcodes left (its windows go too)."""
        station = await session.scalar(select(Station).where(Station.code == code))
        if station is None:
            raise StationError("station_unknown", "code", 404, code=code)
        count = await session.scalar(
            select(func.count(Item.id)).where(Item.station_id == station.id)
        )
        if count:
            raise StationError("station_has_items", "code", 409, code=code, count=count)
        busy = await session.scalar(
            select(func.count(Job.id)).where(
                Job.station_id == station.id, Job.state.in_([JobState.QUEUED, JobState.RUNNING])
            )
        )
        if busy:
            raise StationError("station_busy", "code", 409, code=code)
        if await session.scalar(
            select(func.count(Capture.id)).where(
                Capture.station_id == station.id, Capture.state == CaptureState.RECORDING
            )
        ):
            raise StationError("station_busy", "code", 409, code=code)
        # Windows, planned recordings and finished jobs go with it (ON DELETE CASCADE,
        # written out for SQLite connections without foreign keys enforced).
        for table in (Capture, Schedule, Job):
            await session.execute(delete(table).where(table.station_id == station.id))
        await session.delete(station)

    async def add_schedule(
        self,
        session: AsyncSession,
        *,
        station_code: str,
        programme: str,
        start_time: str,
        duration_seconds: int,
        weekdays: str = "1234567",
    ) -> Schedule:
        station = await self.station(session, station_code)
        if not station.stream_url:
            raise VodError(f"station {station_code!r} has no stream URL to record from")
        try:
            windows.parse_time_of_day(start_time)
        except ValueError as exc:
            raise VodError(str(exc)) from None
        if not 1 <= duration_seconds <= 6 * 3600:
            raise VodError("a capture window lasts 1 second to 6 hours")
        if not weekdays or any(c not in "1234567" for c in weekdays):
            raise VodError("weekdays are ISO digits 1 (Monday) to 7 (Sunday)")
        schedule = Schedule(
            station_id=station.id,
            programme=programme.strip() or station.name,
            start_time=start_time,
            duration_seconds=duration_seconds,
            weekdays="".join(sorted(set(weekdays))),
            enabled=True,
        )
        session.add(schedule)
        await session.flush()
        return schedule

    async def book_capture(
        self,
        session: AsyncSession,
        *,
        station_code: str,
        title: str,
        starts_at: dt.datetime,
        ends_at: dt.datetime,
        programme: str = "",
        schedule_id: int | None = None,
    ) -> Capture:
        station = await self.station(session, station_code)
        if not station.stream_url:
            raise VodError(f"station {station_code!r} has no stream URL to record from")
        starts_at, ends_at = as_utc(starts_at), as_utc(ends_at)
        if ends_at <= starts_at:
            raise VodError("a capture window must end after it starts")
        if ends_at <= self.clock():
            raise VodError("this capture window is already over")
        capture = Capture(
            station_id=station.id,
            schedule_id=schedule_id,
            title=title.strip() or station.name,
            programme=programme,
            starts_at=starts_at,
            ends_at=ends_at,
            state=CaptureState.SCHEDULED,
            node="",
            parts=0,
            error="",
        )
        session.add(capture)
        await session.flush()
        return capture

    async def recent_captures(
        self, session: AsyncSession, limit: int = 10
    ) -> list[tuple[Capture, str]]:
        """The latest capture windows (upcoming first), with their station codes."""
        rows = await session.execute(
            select(Capture, Station.code)
            .join(Station, Capture.station_id == Station.id)
            .order_by(Capture.starts_at.desc())
            .limit(limit)
        )
        return [(capture, code) for capture, code in rows.all()]

    async def plan_captures(self, horizon: dt.timedelta = dt.timedelta(hours=26)) -> int:
        """Turn daily schedules into concrete capture rows for the coming day."""
        now = self.clock()
        created = 0
        async with self.db.session() as session:
            rows = await session.execute(
                select(Schedule, Station)
                .join(Station, Schedule.station_id == Station.id)
                .where(Schedule.enabled.is_(True), Station.enabled.is_(True))
            )
            planned = [
                (schedule, station, window)
                for schedule, station in rows.all()
                for window in windows.windows_between(
                    schedule.start_time,
                    schedule.duration_seconds,
                    schedule.weekdays,
                    self.zone,
                    now,
                    now + horizon,
                )
            ]
        for schedule, station, window in planned:
            async with self.db.session() as session:
                exists = await session.scalar(
                    select(Capture.id).where(
                        Capture.station_id == station.id, Capture.starts_at == window.starts_at
                    )
                )
                if exists is not None:
                    continue
                local = window.starts_at.astimezone(self.zone)
                session.add(
                    Capture(
                        station_id=station.id,
                        schedule_id=schedule.id,
                        title=f"{schedule.programme} {local:%Y-%m-%d}",
                        programme=schedule.programme,
                        starts_at=window.starts_at,
                        ends_at=window.ends_at,
                        state=CaptureState.SCHEDULED,
                        node="",
                        parts=0,
                        error="",
                    )
                )
                created += 1
        return created

    # ---- ingest: every way in ends as a queued job ------------------------------

    async def queue_file(
        self,
        source: Path,
        *,
        station_code: str,
        title: str,
        origin: str,
        broadcast_at: dt.datetime | None = None,
        programme: str = "",
        description: str = "",
        tags: list[str] | None = None,
        source_name: str = "",
        claim: bool = False,
    ) -> Job:
        """Probe a file already under ``incoming/`` and queue its transcode.

        A file ffprobe cannot read is deleted and refused with the reason: it
        never becomes a job, let alone a catalogue entry. ``claim`` creates the
        job already running on this node (the CLI transcodes in its own process).
        """
        try:
            async with self.db.session() as session:
                station = await self.station(session, station_code)
            if not title.strip():
                raise VodError("title must not be empty")
            if len(title) > 300:
                raise VodError("title is longer than 300 characters")
            try:
                probe = await ffmpeg.probe(source)
            except ffmpeg.MediaError as exc:
                raise VodError(str(exc)) from None
            if station.kind is Kind.RADIO and not probe.has_audio:
                raise VodError("a radio programme needs an audio track; this file has none")
            if not probe.duration or probe.duration <= 0:
                raise VodError("the file has no measurable duration")
            now = self.clock()
            async with self.db.session() as session:
                job = Job(
                    state=JobState.RUNNING if claim else JobState.QUEUED,
                    origin=origin,
                    source_path=str(source),
                    source_name=source_name[:300],
                    station_id=station.id,
                    title=title.strip(),
                    programme=programme.strip(),
                    broadcast_at=as_utc(broadcast_at) if broadcast_at else now,
                    description=description,
                    tags=normalise_tags(tags or []),
                    progress=0.0,
                    attempts=1 if claim else 0,
                    node=self.node if claim else "",
                    error="",
                    created_at=now,
                    started_at=now if claim else None,
                    heartbeat_at=now if claim else None,
                )
                session.add(job)
                await session.flush()
        except BaseException:
            discard(source)
            raise
        log.info("vod.job.queued", job=job.id, origin=origin, station=station_code)
        self.job_added.set()
        self._changed()
        return job

    def new_incoming(self, prefix: str, suffix: str = "") -> Path:
        safe_suffix = suffix if re.match(r"^\.[A-Za-z0-9]{1,8}$", suffix or "") else ""
        return self.incoming / f"{prefix}-{uuid.uuid4().hex}{safe_suffix}"

    async def receive_upload(
        self,
        chunks: AsyncIterator[bytes],
        *,
        declared_length: int | None,
        filename: str,
        **metadata: Any,
    ) -> Job:
        """Stream an upload to disk (never whole in memory), refusing it past the limit."""
        limit = self.settings.vod_max_upload_mb * 1024 * 1024
        if declared_length is not None and declared_length > limit:
            raise VodError(f"upload larger than {self.settings.vod_max_upload_mb} MB", 413)
        async with self.db.session() as session:
            await self.station(session, metadata["station_code"])
        target = self.new_incoming("upload", Path(filename).suffix.lower())
        partial = target.with_name(target.name + ".part")
        received = 0
        try:
            with partial.open("wb") as handle:
                buffer = bytearray()
                async for chunk in chunks:
                    received += len(chunk)
                    if received > limit:
                        raise VodError(
                            f"upload larger than {self.settings.vod_max_upload_mb} MB", 413
                        )
                    buffer += chunk
                    if len(buffer) >= UPLOAD_CHUNK:
                        await asyncio.to_thread(handle.write, bytes(buffer))
                        buffer.clear()
                if buffer:
                    await asyncio.to_thread(handle.write, bytes(buffer))
            if received == 0:
                raise VodError("the upload is empty")
            partial.rename(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return await self.queue_file(
            target, origin="upload", source_name=Path(filename).name, **metadata
        )

    async def import_file(self, path: Path, **metadata: Any) -> Job:
        """Copy a local file in (the original stays where it is) and queue it."""
        if not is_file(path):
            raise VodError(f"{path} is not a file")
        target = self.new_incoming("import", path.suffix.lower())
        partial = target.with_name(target.name + ".part")
        try:
            await asyncio.to_thread(shutil.copyfile, path, partial)
            partial.rename(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return await self.queue_file(target, source_name=path.name, **metadata)

    # ---- the job queue ---------------------------------------------------------

    async def claim_job(self) -> Job | None:
        """Take the oldest queued job; the conditional update makes it safe across nodes."""
        async with self.db.session() as session:
            candidates = (
                await session.scalars(
                    select(Job.id)
                    .where(Job.state == JobState.QUEUED)
                    .order_by(Job.created_at, Job.id)
                    .limit(5)
                )
            ).all()
        for job_id in candidates:
            now = self.clock()
            async with self.db.session() as session:
                result = await session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == JobState.QUEUED)
                    .values(
                        state=JobState.RUNNING,
                        node=self.node,
                        attempts=Job.attempts + 1,
                        progress=0.0,
                        started_at=now,
                        heartbeat_at=now,
                    )
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    self._changed()
                    return await session.get(Job, job_id)
        return None

    async def recover_jobs(self, *, all_running: bool = False) -> list[int]:
        """At start-up: jobs cut off by a crash run again once, then fail; never half items.

        Jobs of this node name (a restart) and jobs whose node stopped writing
        heartbeats are taken back; their work folders are removed.
        """
        now = self.clock()
        recovered: list[int] = []
        async with self.db.session() as session:
            running = (
                await session.scalars(select(Job).where(Job.state == JobState.RUNNING))
            ).all()
            for job in running:
                heartbeat = as_utc(job.heartbeat_at) if job.heartbeat_at else None
                stale = heartbeat is None or now - heartbeat > STALE_JOB
                if not (all_running or stale or self._dead_local_node(job.node)):
                    continue
                self._remove_work(job.id)
                recovered.append(job.id)
                if job.attempts >= MAX_ATTEMPTS or not is_file(job.source_path):
                    job.state = JobState.FAILED
                    job.error = (
                        "interrupted: the server stopped during the transcode "
                        f"{job.attempts} time(s); not retried again"
                    )
                    job.finished_at = now
                    discard(job.source_path)
                else:
                    job.state = JobState.QUEUED
                    job.progress = 0.0
                    job.node = ""
        # Work folders of no running job are leftovers of a crash.
        async with self.db.session() as session:
            live = set(
                (await session.scalars(select(Job.id).where(Job.state == JobState.RUNNING))).all()
            )
        for folder in self.work.glob("job-*"):
            with contextlib.suppress(ValueError):
                if int(folder.name.removeprefix("job-")) not in live:
                    shutil.rmtree(folder, ignore_errors=True)
        if recovered:
            log.warning("vod.jobs.recovered", jobs=recovered)
        return recovered

    def _dead_local_node(self, node: str) -> bool:
        """A node name of this host whose process is gone (a restart after a kill)."""
        host, _, pid = node.rpartition("-")
        if host != self.node.rpartition("-")[0] or not pid.isdigit():
            return False
        return int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists()

    def _remove_work(self, job_id: int) -> None:
        shutil.rmtree(self.work / f"job-{job_id}", ignore_errors=True)

    async def run_job(self, job: Job) -> Item | None:
        """Transcode a claimed job to a finished item, or mark it failed with the reason."""
        work = self.work / f"job-{job.id}"
        shutil.rmtree(work, ignore_errors=True)
        output = work / "out"
        output.mkdir(parents=True)
        last_write = 0.0
        started = time.monotonic()

        async def progress(percent: float) -> None:
            nonlocal last_write
            if time.monotonic() - last_write < 1.0 and percent < 100:
                return
            last_write = time.monotonic()
            async with self.db.session() as session:
                await session.execute(
                    update(Job)
                    .where(Job.id == job.id)
                    .values(progress=round(percent, 1), heartbeat_at=self.clock())
                )

        try:
            async with self.db.session() as session:
                station = await session.get(Station, job.station_id)
            if station is None:
                raise VodError("the station was removed")
            produced = await self._transcode(Path(job.source_path), output, station, progress)
            item = await self._publish(job, station, output, produced)
        except asyncio.CancelledError:
            # A clean shutdown: the job waits for the next start, no attempt spent.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._requeue(job.id))
            shutil.rmtree(work, ignore_errors=True)
            raise
        except Exception as exc:
            detail = exc.stderr if isinstance(exc, ffmpeg.FfmpegError) and exc.stderr else ""
            message = str(exc) if not detail else f"{exc}\n{detail}"
            log.warning("vod.job.failed", job=job.id, error=str(exc))
            async with self.db.session() as session:
                await session.execute(
                    update(Job)
                    .where(Job.id == job.id)
                    .values(state=JobState.FAILED, error=message[:8000], finished_at=self.clock())
                )
            discard(job.source_path)
            self._finished("failed", started)
            return None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        discard(job.source_path)
        log.info("vod.job.done", job=job.id, item=item.id, key=item.key)
        self._finished("done", started, item.duration_seconds)
        return item

    def _finished(self, result: str, started: float, media_seconds: float = 0.0) -> None:
        if self.metrics is not None:
            self.metrics.transcoded(result, time.monotonic() - started, media_seconds)
        self._changed()

    async def _requeue(self, job_id: int) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.RUNNING)
                .values(state=JobState.QUEUED, node="", progress=0.0, attempts=Job.attempts - 1)
            )

    async def _transcode(
        self,
        source: Path,
        output: Path,
        station: Station,
        progress: ffmpeg.ProgressCallback,
    ) -> dict[str, Any]:
        probe = await ffmpeg.probe(source)
        duration = probe.duration or 0.0
        segment = self.settings.vod_segment_seconds
        video = probe.has_video and station.kind is Kind.TV

        async def main_progress(percent: float) -> None:
            await progress(percent * 0.9)

        renditions: list[dict[str, Any]] = []
        stills: ffmpeg.Stills | None = None
        if video:
            # The poster and thumbnails come from the transcode's own decode when the
            # duration is known (where they are taken depends on it).
            stills = ffmpeg.stills_plan(output, probe.duration, segment)
            plan = ffmpeg.hls_video_args(
                source,
                output,
                probe,
                self.settings.vod_ladder,
                segment,
                self.settings.vod_x264_preset,
                stills=stills,
            )
            for index in range(len(plan.rungs)):
                (output / f"v{index}").mkdir()
            (output / "thumbs").mkdir()
            await ffmpeg.run_ffmpeg(plan.args, duration=duration, on_progress=main_progress)
            for index, rung in enumerate(plan.rungs):
                width = hls.even(probe.width * rung.height / probe.height) if probe.height else 0
                renditions.append(
                    {"uri": f"v{index}/{hls.MEDIA_NAME}", "height": rung.height, "width": width}
                )
        else:
            (output / "a0").mkdir()
            args = ffmpeg.hls_audio_args(source, output, segment)
            await ffmpeg.run_ffmpeg(args, duration=duration, on_progress=main_progress)
            renditions.append({"uri": f"a0/{hls.MEDIA_NAME}", "height": 0, "width": 0})

        master = hls.MasterPlaylist()
        media_duration = 0.0
        for rendition in renditions:
            playlist_path = output / rendition["uri"]
            playlist = hls.parse_media(playlist_path.read_text())
            if not playlist.segments or not playlist.ended:
                raise VodError(f"the transcoder produced an incomplete {rendition['uri']}")
            folder = playlist_path.parent
            sizes = [(folder / s.uri).stat().st_size for s in playlist.segments]
            peak, average = hls.measured_bandwidth(sizes, playlist)
            rendition["bandwidth"] = peak
            media_duration = max(media_duration, playlist.duration)
            master.variants.append(
                hls.Variant(
                    uri=rendition["uri"],
                    bandwidth=peak,
                    average_bandwidth=average,
                    codecs=(
                        f"{hls.VIDEO_CODEC},{hls.AUDIO_CODEC}"
                        if video and probe.has_audio
                        else hls.VIDEO_CODEC
                        if video
                        else hls.AUDIO_CODEC
                    ),
                    resolution=(rendition["width"], rendition["height"]) if video else None,
                )
            )
        (output / hls.MASTER_NAME).write_text(master.render())

        thumbnails = 0
        has_poster = False
        every = 0.0
        if video:
            if stills is None:
                # No duration from ffprobe: two more passes, placed by the transcoded length.
                stills = ffmpeg.stills_plan(output, media_duration, segment)
                if stills is not None:
                    poster_args = ffmpeg.poster_args(source, stills.poster, stills.poster_at)
                    await ffmpeg.run_ffmpeg(poster_args)
                    await ffmpeg.run_ffmpeg(
                        ffmpeg.thumbnails_args(source, stills.thumbs, stills.every)
                    )
            has_poster = (output / "poster.jpg").exists()
            thumbnails = len(list((output / "thumbs").glob("thumb*.jpg")))
            every = stills.every if stills is not None else 0.0
        await progress(100.0)
        return {
            "renditions": renditions,
            "duration": media_duration,
            "has_poster": has_poster,
            "thumbnails": thumbnails,
            "thumbnail_every": every,
        }

    async def _publish(
        self, job: Job, station: Station, output: Path, produced: dict[str, Any]
    ) -> Item:
        key = uuid.uuid4().hex
        final = self.items / key
        size = await asyncio.to_thread(folder_size, output)
        await asyncio.to_thread(output.rename, final)
        broadcast_at = as_utc(job.broadcast_at)
        try:
            async with self.db.session() as session:
                item = Item(
                    key=key,
                    station_id=station.id,
                    title=job.title,
                    programme=job.programme,
                    level=station.level,
                    kind=station.kind,
                    broadcast_at=broadcast_at,
                    expires_at=retention.expires_at(broadcast_at, self.retention_days(station)),
                    duration_seconds=round(produced["duration"], 3),
                    description=job.description,
                    tags=job.tags,
                    renditions=produced["renditions"],
                    has_poster=produced["has_poster"],
                    thumbnails=produced["thumbnails"],
                    size_bytes=size,
                    views=0,
                    search_text=search_text(
                        job.title,
                        job.programme,
                        station.name,
                        station.code,
                        job.description,
                        " ".join(job.tags),
                    ),
                    created_at=self.clock(),
                )
                session.add(item)
                await session.flush()
                await self._index(session, item, station)
                result = await session.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.state == JobState.RUNNING, Job.node == self.node)
                    .values(
                        state=JobState.DONE,
                        progress=100.0,
                        item_id=item.id,
                        finished_at=self.clock(),
                        error="",
                    )
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    raise VodError("the job was taken over by another node meanwhile")
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        return item

    async def _index(self, session: AsyncSession, item: Item, station: Station) -> None:
        if self.db.backend == "sqlite":
            await session.execute(
                text(
                    "INSERT INTO vod_items_fts(rowid, title, programme, station, description, "
                    "tags) VALUES (:id, :title, :programme, :station, :description, :tags)"
                ),
                {
                    "id": item.id,
                    "title": item.title.lower(),
                    "programme": item.programme.lower(),
                    "station": f"{station.name} {station.code}".lower(),
                    "description": item.description.lower(),
                    "tags": " ".join(item.tags).lower(),
                },
            )

    async def list_jobs(self, session: AsyncSession, limit: int = 50) -> list[tuple[Job, str]]:
        rows = await session.execute(
            select(Job, Station.code)
            .join(Station, Job.station_id == Station.id)
            .order_by(Job.id.desc())
            .limit(limit)
        )
        return [(job, code) for job, code in rows.all()]

    # ---- the catalogue ---------------------------------------------------------

    async def catalogue(
        self,
        session: AsyncSession,
        *,
        day: dt.date | None = None,
        station_code: str | None = None,
        level: Level | None = None,
        kind: Kind | None = None,
        query: str = "",
        limit: int = 50,
        offset: int = 0,
    ) -> list[ItemView]:
        statement = select(Item, Station).join(Station, Item.station_id == Station.id)
        if day is not None:
            start = dt.datetime.combine(day, dt.time(), tzinfo=self.zone).astimezone(dt.UTC)
            statement = statement.where(
                Item.broadcast_at >= start, Item.broadcast_at < start + dt.timedelta(days=1)
            )
        if station_code:
            statement = statement.where(Station.code == station_code)
        if level is not None:
            statement = statement.where(Item.level == level)
        if kind is not None:
            statement = statement.where(Item.kind == kind)
        for term in query.lower().split()[:8]:
            statement = statement.where(self._matches(term))
        statement = statement.order_by(Item.broadcast_at.desc(), Item.id.desc())
        rows = await session.execute(statement.limit(limit).offset(offset))
        return [self._view(item, station) for item, station in rows.all()]

    def _matches(self, term: str) -> sa.ColumnElement[bool]:
        """One search term: the trigram index when it can serve it, a substring scan otherwise.

        Trigram indexes need three characters; two-character Chinese words
        (新闻, 天气) are common, so shorter terms fall back to LIKE on search_text.
        """
        if self.db.backend == "sqlite" and len(term) >= 3:
            phrase = '"' + term.replace('"', '""') + '"'
            fts = sa.table("vod_items_fts", sa.column("rowid"))
            matched = select(fts.c.rowid).where(
                sa.literal_column("vod_items_fts").op("MATCH")(phrase)
            )
            return Item.id.in_(matched)
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # On PostgreSQL the pg_trgm GIN index serves this LIKE.
        return Item.search_text.like(f"%{escaped}%", escape="\\")

    def _view(self, item: Item, station: Station) -> ItemView:
        return ItemView(
            id=item.id,
            key=item.key,
            title=item.title,
            programme=item.programme,
            station=station.code,
            station_name=station.name,
            level=item.level,
            kind=item.kind,
            broadcast_at=as_utc(item.broadcast_at),
            expires_at=as_utc(item.expires_at),
            duration_seconds=item.duration_seconds,
            description=item.description,
            tags=list(item.tags or []),
            renditions=list(item.renditions or []),
            has_poster=item.has_poster,
            thumbnails=item.thumbnails,
            views=item.views,
        )

    async def get_item(self, session: AsyncSession, item_id: int) -> ItemView:
        row = (
            await session.execute(
                select(Item, Station)
                .join(Station, Item.station_id == Station.id)
                .where(Item.id == item_id)
            )
        ).first()
        if row is None:
            raise VodError(f"no item {item_id}", 404)
        return self._view(row[0], row[1])

    async def days_with_items(self, session: AsyncSession, limit: int = 40) -> list[dt.date]:
        times = (await session.scalars(select(Item.broadcast_at))).all()
        days = {as_utc(t).astimezone(self.zone).date() for t in times}
        return sorted(days, reverse=True)[:limit]

    async def delete_item(self, item_id: int) -> ItemView:
        async with self.db.session() as session:
            view = await self.get_item(session, item_id)
            await self._delete_rows(session, [item_id])
        await asyncio.to_thread(shutil.rmtree, self.items / view.key, True)
        self._changed()
        return view

    async def _delete_rows(self, session: AsyncSession, ids: list[int]) -> None:
        if not ids:
            return
        if self.db.backend == "sqlite":
            for item_id in ids:
                await session.execute(
                    text("DELETE FROM vod_items_fts WHERE rowid = :id"), {"id": item_id}
                )
        await session.execute(delete(Item).where(Item.id.in_(ids)))

    # ---- retention -------------------------------------------------------------

    async def busy_keys(self, keys: list[str]) -> set[str]:
        busy = set()
        for key in keys:
            if await self.state.get(f"vod:playing:{key}") is not None:
                busy.add(key)
        return busy

    async def sweep(self, now: dt.datetime | None = None) -> SweepReport:
        """Delete expired items and, below the disk watermark, the oldest ones.

        Rows go first (in one transaction), then folders; items being played
        are left for the next sweep.
        """
        now = now or self.clock()
        report = SweepReport()
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(Item.id, Item.key, Item.broadcast_at, Item.expires_at, Item.size_bytes)
                )
            ).all()
        candidates = [
            retention.Candidate(
                r.id, r.key, as_utc(r.broadcast_at), as_utc(r.expires_at), r.size_bytes
            )
            for r in rows
        ]
        due = [c for c in candidates if c.expires_at <= now]
        busy = await self.busy_keys([c.key for c in due])
        expired = retention.expired(candidates, now, busy)
        report.skipped_busy = [c.item_id for c in due if c.key in busy]
        gone = {c.item_id for c in expired}
        remaining = [c for c in candidates if c.item_id not in gone]
        usage = self.disk(self.root)
        freed = sum(c.size_bytes for c in expired)
        usage = retention.DiskUsage(usage.total_bytes, usage.free_bytes + freed)
        watermark = self.settings.vod_disk_watermark_percent
        if usage.free_percent < watermark:
            busy |= await self.busy_keys([c.key for c in remaining])
        for_disk = retention.to_free_disk(remaining, usage, watermark, busy)
        victims = expired + for_disk
        if victims:
            async with self.db.session() as session:
                await self._delete_rows(session, [c.item_id for c in victims])
            for candidate in victims:
                await asyncio.to_thread(shutil.rmtree, self.items / candidate.key, True)
            self._changed()
        report.expired = [c.item_id for c in expired]
        report.for_disk = [c.item_id for c in for_disk]
        report.orphans = await self._remove_orphans(
            now, {c.key for c in remaining} - {c.key for c in for_disk}
        )
        if victims or report.orphans:
            log.info(
                "vod.sweep",
                expired=report.expired,
                for_disk=report.for_disk,
                orphans=report.orphans,
            )
        return report

    async def _remove_orphans(self, now: dt.datetime, known: set[str]) -> list[str]:
        async with self.db.session() as session:
            keys = set((await session.scalars(select(Item.key))).all())
        removed = []
        for folder in self.items.iterdir():
            if folder.name in keys or folder.name in known:
                continue
            modified = dt.datetime.fromtimestamp(folder.stat().st_mtime, dt.UTC)
            if now - modified > ORPHAN_GRACE or not KEY.match(folder.name):
                await asyncio.to_thread(shutil.rmtree, folder, True)
                removed.append(folder.name)
        return removed

    # ---- serving ---------------------------------------------------------------

    def sign(self, key: str, expires: int) -> str:
        message = f"vod:{key}:{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:32]

    def signed_path(self, key: str, minutes: int | None = None) -> tuple[str, dt.datetime]:
        """A media URL that needs no login (kiosks) until it expires."""
        lifetime = dt.timedelta(minutes=minutes or self.settings.vod_url_minutes)
        expires_at = self.clock() + lifetime
        expires = int(expires_at.timestamp())
        return f"/vod/s/{expires}/{self.sign(key, expires)}/{key}/{hls.MASTER_NAME}", expires_at

    def check_signature(self, key: str, expires: str, signature: str) -> bool:
        if not expires.isdigit() or int(expires) < self.clock().timestamp():
            return False
        if self._signatures.known(key, expires, signature):
            return True
        if not hmac.compare_digest(self.sign(key, int(expires)), signature):
            return False
        self._signatures.add(key, expires, signature)
        return True

    def media_path(self, key: str, path: str) -> str | None:
        """Where the file a media URL names would be (not looked at), or None.

        The patterns forbid '..' and absolute paths; whether the file is there is for
        :class:`vod.serving.MediaResponder`, which opens it.
        """
        if not KEY.match(key) or not MEDIA_PATH.match(path):
            return None
        return f"{self._items_prefix}{key}/{path}"

    async def mark_playing(self, key: str) -> None:
        # One state write per item per 10 s: segment requests are many and hot.
        now = time.monotonic()
        if now - self._playing_marked.get(key, 0.0) < 10.0:
            return
        self._playing_marked[key] = now
        await self.state.set(f"vod:playing:{key}", self.node, ttl=PLAYING_SECONDS)

    async def count_view(self, key: str) -> None:
        async with self.db.session() as session:
            await session.execute(update(Item).where(Item.key == key).values(views=Item.views + 1))
        if self.metrics is not None:
            self.metrics.viewed()

    async def count_items(self, session: AsyncSession) -> int:
        return int(await session.scalar(select(func.count(Item.id))) or 0)
