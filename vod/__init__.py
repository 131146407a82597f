"""News on demand: 30 days of central, provincial and city radio/TV news.

Narrow interface for other services (kiosks show news clips):

- :func:`signed_media_path` gives a signed, expiring link to an item's master playlist,
  under a path prefix of the caller's choice;
- :func:`add_signed_media_routes` serves such links on another application or listener
  (kiosks stand on the public network and reach only their own listener);
- :func:`hls_js_path` is the hls.js browser build the player uses (None before ``npm ci``);
- :func:`import_recording` queues a meeting recording (conference hands it over on stop).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from aiohttp import web

from core.cli import DemoReport
from core.context import AppContext
from core.npm import npm_file
from core.web import CONSOLE, CTX, I18N
from vod import api
from vod.cli import add_cli
from vod.metrics import VodMetrics
from vod.models import Kind, Level
from vod.runtime import VodRuntime
from vod.service import VodError, VodService
from vod.stations import MESSAGES as STATION_MESSAGES

SIGNED_PREFIX = api.SIGNED_PREFIX

MESSAGES = {
    "en": {
        "vod.catalogue": "Catalogue",
        "vod.date": "Date",
        "vod.all_dates": "All dates",
        "vod.station": "Station",
        "vod.all_stations": "All stations",
        "vod.search": "Search",
        "vod.search_placeholder": "title, programme, tag…",
        "vod.filter": "Show",
        "vod.title": "Title",
        "vod.broadcast": "Broadcast",
        "vod.duration": "Duration",
        "vod.views": "Views",
        "vod.play": "Play",
        "vod.level.central": "Central",
        "vod.level.provincial": "Provincial",
        "vod.level.city": "City",
        "vod.kind.tv": "TV",
        "vod.kind.radio": "Radio",
        "vod.no_items": "No programme matches.",
        "vod.player": "Player",
        "vod.jobs": "Transcoding",
        "vod.job.state": "State",
        "vod.job.progress": "Progress",
        "vod.job.error": "Error",
        "vod.job.state.queued": "queued",
        "vod.job.state.running": "running",
        "vod.job.state.done": "done",
        "vod.job.state.failed": "failed",
        "vod.upload": "Upload a programme",
        "vod.upload.file": "File",
        "vod.upload.submit": "Upload",
        "vod.upload.limit": "At most {mb} MB.",
        "vod.upload.sent": "Uploaded: transcoding job {job}.",
        "vod.expires": "Kept until",
        "vod.captures": "Recordings",
        "vod.window": "Window",
        "vod.no_captures": "No recording is scheduled.",
        "vod.capture.state.scheduled": "scheduled",
        "vod.capture.state.recording": "recording",
        "vod.capture.state.done": "recorded",
        "vod.capture.state.failed": "failed",
    },
    "zh": {
        "vod.catalogue": "节目目录",
        "vod.date": "日期",
        "vod.all_dates": "全部日期",
        "vod.station": "电台/电视台",
        "vod.all_stations": "全部台",
        "vod.search": "搜索",
        "vod.search_placeholder": "标题、栏目、标签…",
        "vod.filter": "查看",
        "vod.title": "标题",
        "vod.broadcast": "播出时间",
        "vod.duration": "时长",
        "vod.views": "播放次数",
        "vod.play": "播放",
        "vod.level.central": "中央",
        "vod.level.provincial": "省级",
        "vod.level.city": "市级",
        "vod.kind.tv": "电视",
        "vod.kind.radio": "广播",
        "vod.no_items": "没有符合条件的节目。",
        "vod.player": "播放器",
        "vod.jobs": "转码任务",
        "vod.job.state": "状态",
        "vod.job.progress": "进度",
        "vod.job.error": "错误",
        "vod.job.state.queued": "排队中",
        "vod.job.state.running": "转码中",
        "vod.job.state.done": "完成",
        "vod.job.state.failed": "失败",
        "vod.upload": "上传节目",
        "vod.upload.file": "文件",
        "vod.upload.submit": "上传",
        "vod.upload.limit": "最大 {mb} MB。",
        "vod.upload.sent": "已上传：转码任务 {job}。",
        "vod.expires": "保留至",
        "vod.captures": "录制",
        "vod.window": "时段",
        "vod.no_captures": "没有安排录制。",
        "vod.capture.state.scheduled": "待录制",
        "vod.capture.state.recording": "录制中",
        "vod.capture.state.done": "已录制",
        "vod.capture.state.failed": "失败",
    },
}

# Also the order of the console's navigation.
SETUP_ORDER = 40

VOD = api.VOD


def setup(app: web.Application) -> None:
    app[I18N].add(MESSAGES)
    app[I18N].add(STATION_MESSAGES)
    app[CONSOLE].add_templates("vod", Path(__file__).parent / "templates")
    # Registered once per application, on the server's /metrics.
    runtime = VodRuntime(app[CTX], metrics=VodMetrics(app[CTX].metrics))
    app[VOD] = runtime
    api.mount(app, runtime)
    # Background work starts after the context (core's lifecycle wraps every other).
    app.cleanup_ctx.append(runtime.lifecycle)


def signed_media_path(
    app: web.Application, key: str, *, prefix: str = SIGNED_PREFIX, minutes: int | None = None
) -> str | None:
    """``<prefix>/<expires>/<sig>/<key>/master.m3u8``, or None when vod is not set up.

    The signature sits in the path, so the relative playlist and segment URIs a player
    resolves keep it; ``prefix`` must be one mounted with :func:`add_signed_media_routes`
    (or the default, mounted by vod on the main application).
    """
    runtime = app.get(VOD)
    if runtime is None:
        return None
    path, _ = runtime.service.signed_path(key, minutes)
    return prefix.rstrip("/") + path.removeprefix(SIGNED_PREFIX)


def add_signed_media_routes(
    app: web.Application, router: web.UrlDispatcher, prefix: str = SIGNED_PREFIX
) -> bool:
    """Serve signed links under ``prefix`` on ``router`` (another app's or listener's).

    ``app`` is the main application vod was set up on. Only media a valid, unexpired
    signature names are served there: no catalogue, no staff route. False without vod.
    """
    runtime = app.get(VOD)
    if runtime is None:
        return False
    api.add_signed_media_route(router, runtime.service, prefix.rstrip("/"))
    return True


def hls_js_path() -> Path | None:
    """The minified hls.js build (from ``npm ci``), or None if it is not installed."""
    return npm_file("hls.js", "dist/hls.min.js")


MEETING_STATION = "MEETING"
MEETING_STATION_NAME = "会议录像 Meeting recordings"


async def import_recording(
    app: web.Application,
    path: Path,
    *,
    title: str,
    station_code: str = MEETING_STATION,
    broadcast_at: dt.datetime | None = None,
    description: str = "",
) -> int:
    """Queue a recorded meeting (a local media file) for transcoding; returns the job id.

    Used by ``conference`` on the chair's stop. The file is copied in (the caller
    may delete its own afterwards) and becomes a catalogue item once its transcode
    job is done. The meeting-recordings station is created on first use, so no
    set-up step is needed. Raises :class:`LookupError` when vod is not set up and
    :class:`ValueError` for a file vod refuses (ffprobe cannot read it, no title).
    """
    runtime = app.get(VOD)
    if runtime is None:
        raise LookupError("vod is not set up on this application")
    service = runtime.service
    async with runtime.ctx.db.session() as session:
        stations = {station.code for station in await service.list_stations(session)}
        if station_code not in stations and station_code == MEETING_STATION:
            await service.add_station(
                session,
                code=MEETING_STATION,
                name=MEETING_STATION_NAME,
                level=Level.CITY,
                kind=Kind.TV,
            )
    try:
        job = await service.import_file(
            path,
            station_code=station_code,
            title=title,
            origin="conference",
            broadcast_at=broadcast_at,
            programme="会议录像 Meeting",
            description=description,
            tags=["meeting", "会议"],
        )
    except VodError as exc:
        raise ValueError(str(exc)) from None
    return job.id


DEMO_STATIONS = [
    ("CCTV1", "中央电视台综合频道 CCTV-1", Level.CENTRAL, Kind.TV),
    ("CNR1", "中央人民广播电台中国之声", Level.CENTRAL, Kind.RADIO),
    ("PROVTV", "省广播电视台新闻频道", Level.PROVINCIAL, Kind.TV),
    ("CITYTV", "市广播电视台新闻综合频道", Level.CITY, Kind.TV),
]


async def seed_demo(ctx: AppContext, report: DemoReport) -> None:
    service = VodService(ctx.settings, ctx.db, ctx.state, ctx.secret)
    async with ctx.db.session() as session:
        existing = {station.code for station in await service.list_stations(session)}
        for code, name, level, kind in DEMO_STATIONS:
            if code not in existing:
                await service.add_station(session, code=code, name=name, level=level, kind=kind)
    report.add("news         stations CCTV1, CNR1, PROVTV, CITYTV; add a programme with")
    report.add("             unicomm vod import FILE --station CCTV1 --title 新闻联播")


__all__ = [
    "MEETING_STATION",
    "SETUP_ORDER",
    "SIGNED_PREFIX",
    "VOD",
    "add_cli",
    "add_signed_media_routes",
    "hls_js_path",
    "import_recording",
    "seed_demo",
    "setup",
    "signed_media_path",
]
