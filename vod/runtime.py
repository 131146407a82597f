"""The service's background work in a running server: the transcode workers, the
capture scheduler and recorder, the watch folder and the retention sweeper.

Each loop is a supervised task of the application context; ffmpeg always runs
as a subprocess, so these loops only wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy import select, update

from core.context import AppContext
from media import ffmpeg
from vod.metrics import VodMetrics
from vod.models import Capture, CaptureState, Station
from vod.service import CAPTURE_RETRY_SECONDS, VodError, VodService, as_utc

log = structlog.get_logger("vod")

JOB_POLL_SECONDS = 2.0
SCHEDULER_SECONDS = 1.0
PLAN_EVERY_SECONDS = 300.0
SWEEP_SECONDS = 600.0
WATCH_SECONDS = 2.0
MEDIA_SUFFIXES = {
    ".ts",
    ".mp4",
    ".mkv",
    ".mov",
    ".flv",
    ".avi",
    ".mp3",
    ".aac",
    ".m4a",
    ".wav",
    ".ogg",
    ".opus",
    ".flac",
    ".mpg",
    ".mpeg",
    ".webm",
    ".wma",
    ".wmv",
}
# "20261121-1900 新闻联播.mp4": the broadcast time may lead the file name.
WATCH_NAME = re.compile(r"^(\d{8})[-_T](\d{4})[\s_-]*(.*)$")


class VodRuntime:
    def __init__(
        self,
        ctx: AppContext,
        service: VodService | None = None,
        metrics: VodMetrics | None = None,
    ) -> None:
        self.ctx = ctx
        self.service = service or VodService(ctx.settings, ctx.db, ctx.state, ctx.secret)
        self.metrics = metrics
        if metrics is not None:
            self.service.metrics = metrics
        self._running_jobs: set[asyncio.Task[Any]] = set()
        self._recording: set[int] = set()
        self._watch_seen: dict[Path, tuple[int, float]] = {}

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        await self.start()
        yield
        await self.stop()

    async def start(self) -> None:
        await self.service.recover_jobs()
        await self.recover_captures()
        self.ctx.spawn("vod.jobs", self.job_loop)
        self.ctx.spawn("vod.captures", self.capture_loop)
        self.ctx.spawn("vod.sweeper", self.sweep_loop)
        if self.metrics is not None:
            metrics = self.metrics
            self.ctx.spawn("vod.metrics", lambda: metrics.run(self.ctx.db))
        if self.ctx.settings.vod_watch_dir:
            self.ctx.spawn("vod.watch", self.watch_loop)

    async def stop(self) -> None:
        # Running transcodes are cancelled: their jobs go back to the queue.
        for task in list(self._running_jobs):
            task.cancel()
        await asyncio.gather(*self._running_jobs, return_exceptions=True)

    # ---- transcode workers -----------------------------------------------------

    async def job_loop(self) -> None:
        limit = self.ctx.settings.vod_max_jobs
        while True:
            while len(self._running_jobs) < limit:
                job = await self.service.claim_job()
                if job is None:
                    break
                task = asyncio.get_running_loop().create_task(
                    self.service.run_job(job), name=f"vod.job.{job.id}"
                )
                self._running_jobs.add(task)
                task.add_done_callback(self._job_finished)
            self.service.job_added.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.service.job_added.wait(), JOB_POLL_SECONDS)

    def _job_finished(self, task: asyncio.Task[Any]) -> None:
        self._running_jobs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("vod.job.crashed", error=repr(task.exception()))
        # A free slot: look at the queue again now.
        self.service.job_added.set()

    # ---- captures --------------------------------------------------------------

    async def recover_captures(self) -> None:
        """Recordings cut off by a restart resume if their window is open, else finish."""
        now = self.service.clock()
        async with self.ctx.db.session() as session:
            captures = (
                await session.scalars(
                    select(Capture).where(Capture.state == CaptureState.RECORDING)
                )
            ).all()
            for capture in captures:
                capture.state = CaptureState.SCHEDULED
                capture.node = ""
        for capture in captures:
            if as_utc(capture.ends_at) <= now:
                await self._claim_capture(capture.id)
                self.ctx.spawn(f"vod.capture.{capture.id}", lambda c=capture.id: self.record(c))

    async def capture_loop(self) -> None:
        last_plan = -PLAN_EVERY_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() - last_plan >= PLAN_EVERY_SECONDS:
                await self.service.plan_captures()
                last_plan = loop.time()
            await self.start_due_captures()
            await asyncio.sleep(SCHEDULER_SECONDS)

    async def start_due_captures(self) -> list[int]:
        now = self.service.clock()
        started = []
        async with self.ctx.db.session() as session:
            due = (
                await session.scalars(
                    select(Capture.id).where(
                        Capture.state == CaptureState.SCHEDULED,
                        Capture.starts_at <= now + dt.timedelta(seconds=0.5),
                    )
                )
            ).all()
        for capture_id in due:
            if await self._claim_capture(capture_id):
                started.append(capture_id)
                self.ctx.spawn(f"vod.capture.{capture_id}", lambda c=capture_id: self.record(c))
        return started

    async def _claim_capture(self, capture_id: int) -> bool:
        async with self.ctx.db.session() as session:
            result = await session.execute(
                update(Capture)
                .where(Capture.id == capture_id, Capture.state == CaptureState.SCHEDULED)
                .values(state=CaptureState.RECORDING, node=self.service.node)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def record(self, capture_id: int) -> None:
        """Record a window: reconnect while it lasts, then hand one file to the queue.

        A stream that drops and returns within the window gives several parts,
        joined into one programme; a stream that never answers fails the capture
        with ffmpeg's last error and leaves no file.
        """
        self._recording.add(capture_id)
        try:
            await self._record(capture_id)
        finally:
            self._recording.discard(capture_id)

    async def _record(self, capture_id: int) -> None:
        service = self.service
        async with self.ctx.db.session() as session:
            capture = await session.get(Capture, capture_id)
            assert capture is not None
            station = await session.get(Station, capture.station_id)
            assert station is not None
        ends_at = as_utc(capture.ends_at)
        parts_dir = service.work / f"capture-{capture_id}"
        parts_dir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        attempts = 0

        def window_over() -> bool:
            return service.clock() >= ends_at

        while not window_over():
            index = len(list(parts_dir.glob("part*.ts")))
            part = parts_dir / f"part{index:03d}.ts"
            remaining = (ends_at - service.clock()).total_seconds()
            attempts += 1
            try:
                await ffmpeg.run_ffmpeg(
                    ffmpeg.capture_args(station.stream_url, part, remaining + 1),
                    stop_at=window_over,
                )
            except ffmpeg.MediaError as exc:
                last_error = str(exc)
                log.info("vod.capture.stream_lost", capture=capture_id, error=last_error)
            if ffmpeg.file_size(part) == 0:
                part.unlink(missing_ok=True)
            if not window_over():
                await asyncio.sleep(
                    min(CAPTURE_RETRY_SECONDS, (ends_at - service.clock()).total_seconds())
                )
        parts = sorted(parts_dir.glob("part*.ts"))
        try:
            if not parts and attempts == 0:
                raise VodError("missed: no server was recording during the window")
            if not parts:
                raise VodError(
                    "the stream never answered during the window"
                    + (f": {last_error}" if last_error else "")
                )
            joined = service.new_incoming(f"capture-{capture_id}", ".ts")
            if len(parts) == 1:
                parts[0].rename(joined)
            else:
                listing = parts_dir / "parts.txt"
                listing.write_text(ffmpeg.concat_list(parts))
                try:
                    await ffmpeg.run_ffmpeg(ffmpeg.concat_args(listing, joined))
                except ffmpeg.MediaError:
                    joined.unlink(missing_ok=True)
                    raise
            job = await service.queue_file(
                joined,
                station_code=station.code,
                title=capture.title,
                programme=capture.programme,
                broadcast_at=as_utc(capture.starts_at),
                origin="capture",
                source_name=station.stream_url,
            )
        except (VodError, ffmpeg.MediaError) as exc:
            log.warning("vod.capture.failed", capture=capture_id, error=str(exc))
            await self._finish_capture(capture_id, CaptureState.FAILED, len(parts), str(exc))
            return
        finally:
            shutil.rmtree(parts_dir, ignore_errors=True)
        await self._finish_capture(capture_id, CaptureState.DONE, len(parts), "", job.id)

    async def _finish_capture(
        self,
        capture_id: int,
        state: CaptureState,
        parts: int,
        error: str,
        job_id: int | None = None,
    ) -> None:
        async with self.ctx.db.session() as session:
            await session.execute(
                update(Capture)
                .where(Capture.id == capture_id)
                .values(state=state, parts=parts, error=error[:4000], job_id=job_id)
            )

    # ---- watch folder ----------------------------------------------------------

    async def watch_loop(self) -> None:
        folder = Path(self.ctx.settings.vod_watch_dir)
        if not folder.is_absolute():
            folder = self.ctx.settings.data_dir / folder
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            await self.scan_watch_folder(folder)
            await asyncio.sleep(WATCH_SECONDS)

    async def scan_watch_folder(self, folder: Path) -> list[int]:
        """Queue files of ``<folder>/<STATION>/`` once they stop growing.

        A file is taken only when its size and time are unchanged between two
        scans (a copy in progress is left alone); refused files move to
        ``rejected/`` with a ``.error.txt`` that says why.
        """
        queued = []
        present = set()
        for path in await asyncio.to_thread(lambda: sorted(folder.glob("*/*"))):
            if path.parent.name == "rejected" or not path.is_file():
                continue
            if path.name.startswith(".") or path.suffix.lower() not in MEDIA_SUFFIXES:
                continue
            present.add(path)
            stat = path.stat()
            signature = (stat.st_size, stat.st_mtime)
            if self._watch_seen.get(path) != signature:
                self._watch_seen[path] = signature
                continue
            del self._watch_seen[path]
            title, broadcast_at = self._watch_metadata(path)
            target = self.service.new_incoming("watch", path.suffix.lower())
            try:
                await asyncio.to_thread(shutil.move, path, target)
                job = await self.service.queue_file(
                    target,
                    station_code=path.parent.name,
                    title=title,
                    broadcast_at=broadcast_at,
                    origin="watch",
                    source_name=path.name,
                )
                queued.append(job.id)
            except VodError as exc:
                await asyncio.to_thread(self._reject, folder, path, str(exc))
        for stale in set(self._watch_seen) - present:
            del self._watch_seen[stale]
        return queued

    def _watch_metadata(self, path: Path) -> tuple[str, dt.datetime]:
        match = WATCH_NAME.match(path.stem)
        if match:
            with contextlib.suppress(ValueError):
                local = dt.datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M")
                at = local.replace(tzinfo=self.service.zone).astimezone(dt.UTC)
                return (match.group(3).strip() or path.stem), at
        return path.stem, dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)

    @staticmethod
    def _reject(folder: Path, path: Path, reason: str) -> None:
        rejected = folder / "rejected"
        rejected.mkdir(exist_ok=True)
        (rejected / f"{path.name}.error.txt").write_text(reason + "\n")
        # The file itself was moved into incoming/ and deleted by queue_file.
        log.warning("vod.watch.rejected", file=str(path), reason=reason)

    # ---- retention -------------------------------------------------------------

    async def sweep_loop(self) -> None:
        while True:
            try:
                await self.service.sweep()
            except Exception:
                log.exception("vod.sweep.failed")
            await asyncio.sleep(SWEEP_SECONDS)
