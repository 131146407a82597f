"""News on demand HTTP: JSON routes, the upload, media serving and the console page.

Thin by design: each handler validates, calls :class:`vod.service.VodService`
and shapes the answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from core.api import ApiError, _fields, require
from core.auth import Identity, audit, identity_of
from core.console import ConsolePage
from core.models import Role
from core.npm import add_npm_route
from core.web import API, CONSOLE, CTX, client_address
from media import hls
from vod import console
from vod.models import Capture, Kind, Level, Schedule
from vod.runtime import VodRuntime
from vod.service import ItemView, VodError, VodService, as_utc

PAGE = ConsolePage(
    key="vod",
    title={"zh": "新闻点播", "en": "News on demand"},
    summary={
        "zh": "中央、省、市台30天广播电视新闻",
        "en": "30 days of central, provincial and city radio/TV news",
    },
    path="/console/vod",
    template="vod/index.html",
)

EDITORS = (Role.ADMIN, Role.OPERATOR)
TAG = "vod"

VOD = web.AppKey("vod", VodRuntime)


class StationIn(BaseModel):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=200)
    level: Level
    kind: Kind
    stream_url: str = Field("", max_length=1000)
    retention_days: int | None = Field(None, ge=1, le=3650)


class StationOut(StationIn):
    id: int
    enabled: bool


class ScheduleIn(BaseModel):
    programme: str = Field(min_length=1, max_length=200)
    start_time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    duration_seconds: int = Field(ge=1, le=6 * 3600)
    weekdays: str = Field("1234567", pattern=r"^[1-7]{1,7}$")


class ScheduleOut(ScheduleIn):
    id: int
    station_id: int


class CaptureIn(BaseModel):
    station: str = Field(min_length=1, max_length=32)
    title: str = Field(min_length=1, max_length=300)
    programme: str = Field("", max_length=200)
    starts_at: dt.datetime
    ends_at: dt.datetime


class CaptureOut(BaseModel):
    id: int
    station_id: int
    title: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    state: str
    parts: int
    error: str
    job_id: int | None


class ItemQuery(BaseModel):
    date: dt.date | None = None
    station: str | None = Field(None, max_length=32)
    level: Level | None = None
    kind: Kind | None = None
    q: str = Field("", max_length=200)
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0)


class ItemOut(BaseModel):
    id: int
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
    views: int
    renditions: list[dict[str, Any]]
    play_url: str
    poster_url: str | None
    thumbnails: int


class JobOut(BaseModel):
    id: int
    state: str
    origin: str
    station: str
    title: str
    source_name: str
    progress: float
    attempts: int
    error: str
    item_id: int | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class UploadQuery(BaseModel):
    station: str = Field(min_length=1, max_length=32)
    title: str = Field(min_length=1, max_length=300)
    broadcast_at: dt.datetime | None = None
    programme: str = Field("", max_length=200)
    description: str = Field("", max_length=4000)
    tags: str = Field("", max_length=1000)
    filename: str = Field("upload", max_length=300)


class SignedLink(BaseModel):
    url: str
    expires_at: dt.datetime


class SweepOut(BaseModel):
    expired: list[int]
    for_disk: list[int]
    skipped_busy: list[int]


def media_base(view: ItemView) -> str:
    return f"/vod/media/{view.key}/"


def item_out(view: ItemView) -> ItemOut:
    base = media_base(view)
    return ItemOut(
        id=view.id,
        title=view.title,
        programme=view.programme,
        station=view.station,
        station_name=view.station_name,
        level=view.level,
        kind=view.kind,
        broadcast_at=view.broadcast_at,
        expires_at=view.expires_at,
        duration_seconds=view.duration_seconds,
        description=view.description,
        tags=view.tags,
        views=view.views,
        renditions=view.renditions,
        play_url=base + hls.MASTER_NAME,
        poster_url=base + "poster.jpg" if view.has_poster else None,
        thumbnails=view.thumbnails,
    )


def _refusal(exc: VodError) -> ApiError:
    return ApiError(exc.status, str(exc))


# ---- media serving (also mounted by other listeners through vod's __init__) -----------

SIGNED_PREFIX = "/vod/s"


async def serve_media(
    service: VodService, request: web.Request, key: str, path: str, *, public: bool
) -> web.StreamResponse:
    file = service.media_path(key, path)
    if file is None:
        raise web.HTTPNotFound(text="no such media file")
    scope = "public" if public else "private"
    # Segments and finished VOD playlists never change; only expiry removes them.
    cache = (
        f"{scope}, max-age=86400, immutable" if path.endswith(".ts") else f"{scope}, max-age=300"
    )
    headers = {"Content-Type": hls.mime_type(path), "Cache-Control": cache}
    # Raises 404 for a missing file; the bytes go once the response is returned.
    response, sent = service.responder.respond(request, file, headers)
    await service.mark_playing(key)
    if path == hls.MASTER_NAME and request.method == "GET" and _from_start(request):
        await service.count_view(key)
    if service.metrics is not None:
        service.metrics.served(path, sent, public=public)
    return response


def _from_start(request: web.Request) -> bool:
    """No Range, or one from the first byte: a player starting, not resuming a download."""
    try:
        return not request.http_range.start
    except ValueError:
        return False


def add_signed_media_route(router: web.UrlDispatcher, service: VodService, prefix: str) -> None:
    """``<prefix>/<expires>/<sig>/<key>/<path>``: media for a signed link, no login needed."""

    async def signed_media(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        if not service.check_signature(info["key"], info["expires"], info["sig"]):
            raise web.HTTPForbidden(text="this link is invalid or has expired")
        return await serve_media(service, request, info["key"], info["path"], public=True)

    router.add_get(prefix + "/{expires}/{sig}/{key}/{path:.+}", signed_media)


def mount(app: web.Application, runtime: VodRuntime) -> None:
    ctx = app[CTX]
    api = app[API]
    router = app.router
    service: VodService = runtime.service

    async def list_stations(request: web.Request, identity: Identity) -> list[StationOut]:
        async with ctx.db.session() as session:
            stations = await service.list_stations(session)
        return [StationOut.model_validate(s, from_attributes=True) for s in stations]

    api.add(
        router,
        "GET",
        "/api/vod/stations",
        list_stations,
        summary="List stations",
        tag=TAG,
        response=list[StationOut],
    )

    async def add_station(request: web.Request, identity: Identity, body: StationIn) -> StationOut:
        async with ctx.db.session() as session:
            try:
                station = await service.add_station(session, **body.model_dump())
            except VodError as exc:
                raise _refusal(exc) from None
            await audit(
                session, identity.subject, "vod.station.add", body.code, client_address(request)
            )
            return StationOut.model_validate(station, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/vod/stations",
        add_station,
        summary="Add a station",
        tag=TAG,
        roles=EDITORS,
        body=StationIn,
        response=StationOut,
        status=201,
    )

    async def add_schedule(
        request: web.Request, identity: Identity, body: ScheduleIn
    ) -> ScheduleOut:
        code = request.match_info["code"]
        async with ctx.db.session() as session:
            try:
                schedule = await service.add_schedule(
                    session, station_code=code, **body.model_dump()
                )
            except VodError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "vod.schedule.add",
                code,
                client_address(request),
                start=body.start_time,
            )
            return ScheduleOut.model_validate(schedule, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/vod/stations/{code}/schedules",
        add_schedule,
        summary="Add a daily capture window to a station",
        tag=TAG,
        roles=EDITORS,
        body=ScheduleIn,
        response=ScheduleOut,
        status=201,
    )

    async def list_schedules(request: web.Request, identity: Identity) -> list[ScheduleOut]:
        from sqlalchemy import select

        async with ctx.db.session() as session:
            rows = (await session.scalars(select(Schedule).order_by(Schedule.id))).all()
        return [ScheduleOut.model_validate(s, from_attributes=True) for s in rows]

    api.add(
        router,
        "GET",
        "/api/vod/schedules",
        list_schedules,
        summary="List capture windows",
        tag=TAG,
        response=list[ScheduleOut],
    )

    async def book_capture(request: web.Request, identity: Identity, body: CaptureIn) -> CaptureOut:
        async with ctx.db.session() as session:
            try:
                capture = await service.book_capture(
                    session,
                    station_code=body.station,
                    title=body.title,
                    programme=body.programme,
                    starts_at=body.starts_at,
                    ends_at=body.ends_at,
                )
            except VodError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "vod.capture.book",
                body.station,
                client_address(request),
                title=body.title,
            )
            return CaptureOut.model_validate(capture, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/vod/captures",
        book_capture,
        summary="Book a one-off capture window",
        tag=TAG,
        roles=EDITORS,
        body=CaptureIn,
        response=CaptureOut,
        status=201,
    )

    async def list_captures(request: web.Request, identity: Identity) -> list[CaptureOut]:
        from sqlalchemy import select

        async with ctx.db.session() as session:
            rows = (
                await session.scalars(select(Capture).order_by(Capture.starts_at.desc()).limit(50))
            ).all()
        return [CaptureOut.model_validate(c, from_attributes=True) for c in rows]

    api.add(
        router,
        "GET",
        "/api/vod/captures",
        list_captures,
        summary="Recent capture windows",
        tag=TAG,
        response=list[CaptureOut],
    )

    async def list_items(
        request: web.Request, identity: Identity, query: ItemQuery
    ) -> list[ItemOut]:
        async with ctx.db.session() as session:
            views = await service.catalogue(
                session,
                day=query.date,
                station_code=query.station,
                level=query.level,
                kind=query.kind,
                query=query.q,
                limit=query.limit,
                offset=query.offset,
            )
        return [item_out(v) for v in views]

    api.add(
        router,
        "GET",
        "/api/vod/items",
        list_items,
        summary="The catalogue: by date, station, level, kind, full-text search",
        tag=TAG,
        query=ItemQuery,
        response=list[ItemOut],
    )

    async def get_item(request: web.Request, identity: Identity) -> ItemOut:
        async with ctx.db.session() as session:
            try:
                return item_out(await service.get_item(session, _item_id(request)))
            except VodError as exc:
                raise _refusal(exc) from None

    api.add(
        router,
        "GET",
        "/api/vod/items/{id}",
        get_item,
        summary="One catalogue item",
        tag=TAG,
        response=ItemOut,
    )

    async def delete_item(request: web.Request, identity: Identity) -> dict[str, int]:
        try:
            view = await service.delete_item(_item_id(request))
        except VodError as exc:
            raise _refusal(exc) from None
        async with ctx.db.session() as session:
            await audit(
                session,
                identity.subject,
                "vod.item.delete",
                str(view.id),
                client_address(request),
                title=view.title,
            )
        return {"deleted": view.id}

    api.add(
        router,
        "DELETE",
        "/api/vod/items/{id}",
        delete_item,
        summary="Remove an item and its files",
        tag=TAG,
        roles=EDITORS,
    )

    async def signed_link(request: web.Request, identity: Identity) -> SignedLink:
        async with ctx.db.session() as session:
            try:
                view = await service.get_item(session, _item_id(request))
            except VodError as exc:
                raise _refusal(exc) from None
        path, expires_at = service.signed_path(view.key)
        return SignedLink(url=path, expires_at=expires_at)

    api.add(
        router,
        "POST",
        "/api/vod/items/{id}/link",
        signed_link,
        summary="A signed, expiring media URL (for kiosks, no login needed)",
        tag=TAG,
        roles=EDITORS,
        response=SignedLink,
    )

    async def list_jobs(request: web.Request, identity: Identity) -> list[JobOut]:
        async with ctx.db.session() as session:
            rows = await service.list_jobs(session)
        return [
            JobOut(
                id=job.id,
                state=job.state.value,
                origin=job.origin,
                station=code,
                title=job.title,
                source_name=job.source_name,
                progress=job.progress,
                attempts=job.attempts,
                error=job.error,
                item_id=job.item_id,
                created_at=as_utc(job.created_at),
                finished_at=as_utc(job.finished_at) if job.finished_at else None,
            )
            for job, code in rows
        ]

    api.add(
        router,
        "GET",
        "/api/vod/jobs",
        list_jobs,
        summary="Transcode jobs with progress and errors",
        tag=TAG,
        response=list[JobOut],
    )

    async def purge(request: web.Request, identity: Identity) -> SweepOut:
        report = await service.sweep()
        async with ctx.db.session() as session:
            await audit(
                session,
                identity.subject,
                "vod.purge",
                "",
                client_address(request),
                deleted=report.deleted,
            )
        return SweepOut(
            expired=report.expired, for_disk=report.for_disk, skipped_busy=report.skipped_busy
        )

    api.add(
        router,
        "POST",
        "/api/vod/purge",
        purge,
        summary="Run retention now",
        tag=TAG,
        roles=(Role.ADMIN,),
        response=SweepOut,
    )

    async def upload(request: web.Request) -> web.StreamResponse:
        identity = require(request, *EDITORS)
        try:
            params = UploadQuery.model_validate(dict(request.query))
        except ValidationError as exc:
            raise ApiError(422, "invalid query parameters", _fields(exc)) from None

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_chunked(256 * 1024):
                yield chunk

        try:
            job = await service.receive_upload(
                chunks(),
                declared_length=request.content_length,
                filename=params.filename,
                station_code=params.station,
                title=params.title,
                broadcast_at=params.broadcast_at,
                programme=params.programme,
                description=params.description,
                tags=params.tags.split(","),
            )
        except VodError as exc:
            raise _refusal(exc) from None
        async with ctx.db.session() as session:
            await audit(
                session,
                identity.subject,
                "vod.upload",
                params.station,
                client_address(request),
                title=params.title,
                job=job.id,
            )
        return web.json_response({"job_id": job.id, "state": job.state.value}, status=202)

    api.add_raw(
        router,
        "POST",
        "/api/vod/uploads",
        upload,
        summary="Upload a programme: the raw file as the body, metadata in the query "
        "(station, title, broadcast_at, programme, description, tags, filename); "
        "streamed to disk, size-limited, probed, then queued (202 with the job id)",
        tag=TAG,
        content_type="application/octet-stream",
    )

    # ---- media -----------------------------------------------------------------

    async def staff_media(request: web.Request) -> web.StreamResponse:
        identity = identity_of(request)
        if identity is None or identity.role is None:
            raise web.HTTPUnauthorized(text="sign in, or use a signed link")
        info = request.match_info
        return await serve_media(service, request, info["key"], info["path"], public=False)

    router.add_get("/vod/media/{key}/{path:.+}", staff_media)
    add_signed_media_route(router, service, SIGNED_PREFIX)

    for name in ("hls.min.js", "hls.min.js.map"):
        add_npm_route(
            router,
            f"/vod/static/{name}",
            "hls.js",
            f"dist/{name}",
            cache_control="public, max-age=86400",
        )

    # ---- console ---------------------------------------------------------------

    async def page_values(request: web.Request) -> dict[str, Any]:
        try:
            query = ItemQuery.model_validate(
                {k: v for k, v in request.query.items() if v and k in ItemQuery.model_fields}
            )
        except ValidationError:
            query = ItemQuery()
        identity = identity_of(request)
        async with ctx.db.session() as session:
            stations = await service.list_stations(session)
            items = await service.catalogue(
                session,
                day=query.date,
                station_code=query.station,
                level=query.level,
                kind=query.kind,
                query=query.q,
                limit=query.limit,
            )
            days = await service.days_with_items(session)
            jobs = await service.list_jobs(session, limit=20)
            captures = await service.recent_captures(session, limit=10)
            station_windows = await service.station_windows(session)
        return {
            "captures": captures,
            "stations": stations,
            "items": [item_out(v) for v in items],
            "days": days,
            "jobs": jobs,
            "query": query,
            "selected": request.query.get("item", ""),
            "can_edit": identity is not None and identity.has_role(*EDITORS),
            "zone": service.zone,
            "as_local": lambda value: as_utc(value).astimezone(service.zone),
            "max_upload_mb": ctx.settings.vod_max_upload_mb,
            "station_windows": station_windows,
            "end_of": console.window_end,
            **console.page_extras(request, ctx.settings),
        }

    async def console_page(request: web.Request) -> Mapping[str, Any]:
        return await page_values(request)

    app[CONSOLE].add_page(router, PAGE, console_page)
    console.mount(app, service, PAGE, page_values)


def _item_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise ApiError(404, f"no item {raw}")
    return int(raw)
