"""``unicomm vod ...``: stations, import, the catalogue and retention from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from core.auth import audit
from core.cli import CLI_ACTOR, CliError
from core.context import AppContext
from vod.models import Kind, Level
from vod.service import VodError, VodService


def _service(ctx: AppContext) -> VodService:
    return VodService(ctx.settings, ctx.db, ctx.state, ctx.secret)


def _absolute(name: str) -> Path:
    # Resolved here, in the command's own directory, before anything else runs.
    return Path(os.path.abspath(os.path.expanduser(name)))


def _when(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"--broadcast-at {text!r} is not an ISO time (2026-11-21T19:00+08:00)"
        ) from None
    if value.tzinfo is None:
        raise CliError("--broadcast-at needs a time zone offset, e.g. 2026-11-21T19:00+08:00")
    return value


async def _station_add(ctx: AppContext, args: argparse.Namespace) -> int:
    service = _service(ctx)
    async with ctx.db.session() as session:
        try:
            await service.add_station(
                session,
                code=args.code,
                name=args.name,
                level=Level(args.level),
                kind=Kind(args.kind),
                stream_url=args.url or "",
                retention_days=args.retention_days,
            )
        except VodError as exc:
            raise CliError(str(exc)) from None
        await audit(session, CLI_ACTOR, "vod.station.add", args.code)
    print(f"added station {args.code} ({args.name})")
    return 0


async def _station_list(ctx: AppContext, args: argparse.Namespace) -> int:
    service = _service(ctx)
    async with ctx.db.session() as session:
        for station in await service.list_stations(session):
            days = service.retention_days(station)
            print(
                f"{station.code}\t{station.name}\t{station.level.value}\t{station.kind.value}"
                f"\t{days}d\t{station.stream_url or '-'}"
            )
    return 0


async def _import(ctx: AppContext, args: argparse.Namespace) -> int:
    """Transcode in this process (the server need not run); the job is visible meanwhile."""
    service = _service(ctx)
    path = _absolute(args.file)
    try:
        job = await service.import_file(
            path,
            station_code=args.station,
            title=args.title,
            origin="cli",
            broadcast_at=_when(args.broadcast_at),
            programme=args.programme or "",
            description=args.description or "",
            tags=(args.tags or "").split(","),
            claim=True,
        )
    except VodError as exc:
        raise CliError(str(exc)) from None
    print(f"transcoding {path.name} (job {job.id}) ...", file=sys.stderr)
    item = await service.run_job(job)
    if item is None:
        async with ctx.db.session() as session:
            from vod.models import Job

            failed = await session.get(Job, job.id)
            reason = failed.error.splitlines()[0] if failed and failed.error else "unknown error"
        raise CliError(f"transcode failed: {reason}")
    print(f"imported item {item.id}: {item.title} ({item.duration_seconds:.1f} s)")
    return 0


async def _list(ctx: AppContext, args: argparse.Namespace) -> int:
    service = _service(ctx)
    day = dt.date.fromisoformat(args.date) if args.date else None
    async with ctx.db.session() as session:
        views = await service.catalogue(
            session, day=day, station_code=args.station, query=args.search or "", limit=args.limit
        )
    for view in views:
        local = view.broadcast_at.astimezone(service.zone)
        print(
            f"{view.id}\t{local:%Y-%m-%d %H:%M}\t{view.station}\t{view.kind.value}"
            f"\t{view.duration_seconds:.0f}s\t{view.views} views\t{view.title}"
        )
    if not views:
        print("no items", file=sys.stderr)
    return 0


async def _purge(ctx: AppContext, args: argparse.Namespace) -> int:
    report = await _service(ctx).sweep()
    async with ctx.db.session() as session:
        await audit(session, CLI_ACTOR, "vod.purge", "", deleted=report.deleted)
    kept = f"; {len(report.skipped_busy)} being played kept for now" if report.skipped_busy else ""
    print(f"purged {len(report.expired)} expired and {len(report.for_disk)} for disk space{kept}")
    return 0


def add_cli(commands: Any) -> None:
    vod = commands.add_parser("vod", help="news on demand").add_subparsers(
        dest="vod_command", required=True
    )
    station = vod.add_parser("station", help="radio and TV stations").add_subparsers(
        dest="vod_station_command", required=True
    )
    add = station.add_parser("add", help="add a station")
    add.add_argument("code")
    add.add_argument("--name", required=True)
    add.add_argument("--level", required=True, choices=[v.value for v in Level])
    add.add_argument("--kind", required=True, choices=[v.value for v in Kind])
    add.add_argument("--url", help="stream URL ffmpeg reads (HTTP, HLS, RTSP, RTMP, UDP)")
    add.add_argument("--retention-days", type=int, help="default: vod_retention_days")
    add.set_defaults(run=_station_add)
    station.add_parser("list", help="list stations").set_defaults(run=_station_list)

    imp = vod.add_parser("import", help="transcode a media file into the catalogue")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--station", required=True, help="station code")
    imp.add_argument("--title", required=True)
    imp.add_argument("--broadcast-at", help="ISO time with offset; default: now")
    imp.add_argument("--programme")
    imp.add_argument("--description")
    imp.add_argument("--tags", help="comma-separated")
    imp.set_defaults(run=_import)

    lst = vod.add_parser("list", help="list the catalogue, newest first")
    lst.add_argument("--date", help="YYYY-MM-DD (in the city's timezone)")
    lst.add_argument("--station")
    lst.add_argument("--search")
    lst.add_argument("--limit", type=int, default=100)
    lst.set_defaults(run=_list)

    vod.add_parser("purge", help="run retention now (expired items, disk watermark)").set_defaults(
        run=_purge
    )
