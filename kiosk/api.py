"""Kiosk HTTP routes, thin: the operators' JSON API, the portal feed, the kiosk's own routes.

The kiosk's own routes (app, feed, heartbeat, pairing, live socket, media) live under
``/kiosk/`` and are mounted both on the main application and, when
``kiosk_http_port`` is set, on a listener of their own that serves nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from core.api import ApiError
from core.auth import Identity, audit, identity_of
from core.console import ConsolePage
from core.context import AppContext
from core.db import utcnow
from core.models import DeviceKind, Role
from core.npm import add_npm_route
from core.web import API, CONSOLE, CTX, client_address
from kiosk import rules, service
from kiosk.feeds import FeedCache
from kiosk.live import Connection, KioskPush, LiveHub
from kiosk.models import Alert, ContentItem, Kiosk
from kiosk.rules import ContentKind, Placement

log = structlog.get_logger("kiosk")

TAG = "kiosk"
EDITORS = (Role.OPERATOR,)
TAKEOVER = (Role.OPERATOR, Role.DUTY_OFFICER)
APP_DIR = Path(__file__).parent / "app"
APP_VERSION = "1"
HUB = web.AppKey("kiosk_hub", LiveHub)
NEWS_KEY = r"[A-Za-z0-9_.-]{1,100}"

PAGE = ConsolePage(
    key="kiosk",
    title={"zh": "信息亭", "en": "Kiosks"},
    summary={
        "zh": "街头公共信息亭的内容与终端",
        "en": "Content and devices of the street information kiosks",
    },
    path="/console/kiosk",
    template="kiosk/index.html",
)


# ---------------------------------------------------------------- models


class Bilingual(BaseModel):
    zh: str = Field(min_length=1, max_length=2000)
    en: str = Field("", max_length=2000)


class ItemIn(BaseModel):
    kind: ContentKind
    category: str = Field(min_length=1, max_length=32)
    title_zh: str = Field(min_length=1, max_length=200)
    title_en: str = Field("", max_length=200)
    body_zh: str = Field("", max_length=20000)
    body_en: str = Field("", max_length=20000)
    steps: list[Bilingual] = Field(default_factory=list, max_length=50)
    documents: list[Bilingual] = Field(default_factory=list, max_length=50)
    media_id: int | None = None
    vod_key: str = Field("", max_length=100)
    portal_url: str = Field("", max_length=500)
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None


class ItemOut(BaseModel):
    id: int
    kind: str
    category: str
    title_zh: str
    title_en: str
    body_zh: str
    body_en: str
    details: dict[str, Any]
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None


class MediaOut(BaseModel):
    id: int
    content_type: str
    size: int
    url: str


class RuleIn(BaseModel):
    weekdays: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])
    dayparts: list[str] = Field(default_factory=list, max_length=12)
    date_from: dt.date | None = None
    date_until: dt.date | None = None


class PlaylistIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    item_ids: list[int] = Field(default_factory=list, max_length=500)
    rules: list[RuleIn] = Field(default_factory=list, max_length=20)
    groups: list[str] = Field(default_factory=list)
    districts: list[str] = Field(default_factory=list)
    streets: list[str] = Field(default_factory=list)
    priority: int = Field(0, ge=-100, le=100)


class PlaylistOut(BaseModel):
    id: int
    name: str
    item_ids: list[int]
    rules: list[dict[str, Any]]
    target: dict[str, list[str]]
    priority: int


class GroupIn(BaseModel):
    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    district: str = Field("", max_length=100)
    street: str = Field("", max_length=100)


class GroupOut(GroupIn):
    id: int


class ApproveIn(BaseModel):
    code: str = Field(min_length=4, max_length=16)
    name: str = Field(min_length=1, max_length=100)
    group: str | None = Field(None, max_length=32)


class KioskOut(BaseModel):
    id: int
    name: str
    group: str
    state: rules.FleetState
    last_seen_at: dt.datetime | None
    last_rendered_at: dt.datetime | None
    app_version: str
    content_version: str
    uptime_seconds: int
    cache_state: dict[str, Any]
    connected_here: bool
    paired: bool
    screenshot_at: dt.datetime | None
    screenshot_url: str | None  # staff only (the console's session or a staff token)


class AlertIn(BaseModel):
    headline: str = Field(min_length=1, max_length=500)
    text: str = Field("", max_length=5000)
    severity: str = Field("Extreme", pattern=r"^(Extreme|Severe|Moderate|Minor|Unknown)$")
    groups: list[str] = Field(default_factory=list)
    districts: list[str] = Field(default_factory=list)
    expires_minutes: float | None = Field(None, gt=0, le=7 * 24 * 60)


class AlertOut(BaseModel):
    id: int
    identifier: str
    source: str
    headline: str
    text: str
    severity: str
    target: dict[str, list[str]]
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    cancelled_at: dt.datetime | None


class FeedQuery(BaseModel):
    group: str | None = Field(None, max_length=32)


class PlaysQuery(BaseModel):
    day_from: dt.date
    day_until: dt.date


class PairingOut(BaseModel):
    code: str
    claim: str
    expires_at: dt.datetime


class ClaimIn(BaseModel):
    claim: str = Field(min_length=10, max_length=100)


class HeartbeatIn(BaseModel):
    app_version: str = Field("", max_length=40)
    content_version: str = Field("", max_length=64)
    uptime_seconds: int = Field(0, ge=0)
    last_rendered_at: dt.datetime | None = None
    cache_state: dict[str, Any] = Field(default_factory=dict)
    # A data: URL; its type and size (service.SCREENSHOT_MAX_BYTES) are checked by the service.
    screenshot: str = Field("", max_length=200_000)
    plays: dict[str, int] = Field(
        default_factory=dict, max_length=1000
    )  # "item_id:action" -> count


# ---------------------------------------------------------------- helpers


def _refusal(exc: service.KioskError) -> ApiError:
    detail = [{"field": exc.field, "message": str(exc)}] if exc.field else None
    return ApiError(exc.status, str(exc), detail)


def _item_input(body: ItemIn) -> service.ItemInput:
    return service.ItemInput(
        kind=body.kind,
        category=body.category,
        title_zh=body.title_zh,
        title_en=body.title_en,
        body_zh=body.body_zh,
        body_en=body.body_en,
        steps=[s.model_dump() for s in body.steps],
        documents=[d.model_dump() for d in body.documents],
        media_id=body.media_id,
        vod_key=body.vod_key,
        portal_url=body.portal_url,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
    )


def _playlist_input(body: PlaylistIn) -> service.PlaylistInput:
    return service.PlaylistInput(
        name=body.name,
        item_ids=body.item_ids,
        rules=[r.model_dump(mode="json") for r in body.rules],
        groups=body.groups,
        districts=body.districts,
        streets=body.streets,
        priority=body.priority,
    )


def _id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise ApiError(404, "no such id") from None


def _zone(ctx: AppContext) -> ZoneInfo:
    return ctx.settings.zone


def _feed_response(
    request: web.Request, feed: rules.Feed, extra: Mapping[str, Any] | None = None
) -> web.StreamResponse:
    """304 when the reader has this version; else the feed (the cached body is never changed)."""
    headers = {"ETag": feed.etag, "Cache-Control": "no-cache"}
    if rules.etag_matches(request.headers.get("If-None-Match"), feed.etag):
        return web.Response(status=304, headers=headers)
    body = {**feed.body, **extra} if extra else feed.body
    return web.json_response(
        body, headers=headers, dumps=lambda v: json.dumps(v, ensure_ascii=False)
    )


def alert_push(alert: Alert) -> KioskPush:
    spec = service.alert_spec(alert)
    if spec.cancelled:
        return KioskPush(kind="alert_cleared", alert={"id": alert.id}, target=alert.target)
    return KioskPush(kind="alert", alert=spec.to_json(), target=alert.target)


# ---------------------------------------------------------------- the kiosk's own routes


def kiosk_json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def device_kiosk(ctx: AppContext, request: web.Request, token: str | None = None) -> Kiosk:
    """The kiosk a device token belongs to, or 401; works with or without core's middleware."""
    identity: Identity | None = identity_of(request) if token is None else None
    if identity is None:
        if token is None:
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        identity = await ctx.auth.identify_token(token) if token.startswith("ud_") else None
    if identity is None or identity.via != "device" or identity.device_kind is not DeviceKind.KIOSK:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "a valid kiosk device token is required"}),
            content_type="application/json",
        )
    kiosk_id = service.kiosk_id_of_token_name(identity.subject)
    async with ctx.db.session() as session:
        kiosk = await session.get(Kiosk, kiosk_id) if kiosk_id else None
    if kiosk is None:
        raise web.HTTPUnauthorized(
            text='{"error": "this kiosk was removed"}', content_type="application/json"
        )
    return kiosk


async def _json_body(request: web.Request, model: type[Any]) -> Any:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text='{"error": "body must be application/json"}', content_type="application/json"
        )
    raw = await request.content.read(300_000)
    try:
        return model.model_validate(json.loads(raw or b"null"))
    except (ValueError, ValidationError) as exc:
        raise web.HTTPUnprocessableEntity(
            text=json.dumps({"error": f"invalid body: {str(exc).splitlines()[0]}"}),
            content_type="application/json",
        ) from None


def mount_kiosk_routes(
    router: web.UrlDispatcher, ctx: AppContext, hub: LiveHub, feeds: FeedCache, news: Any
) -> None:
    def static(name: str, content_type: str, extra: Mapping[str, str] | None = None) -> Any:
        headers = {"Content-Type": content_type, "Cache-Control": "no-cache", **(extra or {})}

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(APP_DIR / name, headers=headers)

        return handler

    router.add_get(
        "/kiosk/",
        static("index.html", "text/html; charset=utf-8", {"Content-Security-Policy": CSP}),
    )
    router.add_get("/kiosk/app.js", static("app.js", "text/javascript; charset=utf-8"))
    router.add_get("/kiosk/app.css", static("app.css", "text/css; charset=utf-8"))
    router.add_get("/kiosk/sw.js", static("sw.js", "text/javascript; charset=utf-8"))
    router.add_get("/kiosk/console.js", static("console.js", "text/javascript; charset=utf-8"))
    router.add_get(
        "/kiosk/manifest.webmanifest", static("manifest.webmanifest", "application/manifest+json")
    )

    async def kiosk_redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/kiosk/")

    router.add_get("/kiosk", kiosk_redirect)
    mount_browser_libraries(router)

    async def start_pairing(request: web.Request) -> web.StreamResponse:
        lifetime = dt.timedelta(minutes=ctx.settings.kiosk_pairing_minutes)
        async with ctx.db.session() as session:
            started = await service.start_pairing(session, lifetime, client_address(request))
        out = PairingOut(code=started.code, claim=started.claim, expires_at=started.expires_at)
        return web.json_response(out.model_dump(mode="json"), status=201)

    router.add_post("/kiosk/api/pairings", start_pairing)

    async def claim(request: web.Request) -> web.StreamResponse:
        body: ClaimIn = await _json_body(request, ClaimIn)
        try:
            async with ctx.db.session() as session:
                claimed = await service.claim_pairing(session, ctx.auth, body.claim)
                if claimed.token is not None and claimed.kiosk is not None:
                    await audit(
                        session,
                        claimed.kiosk.name,
                        "kiosk.paired",
                        claimed.kiosk.name,
                        client_address(request),
                    )
        except service.KioskError as exc:
            return kiosk_json_error(exc.status, str(exc))
        if claimed.token is None:
            return web.json_response({"state": "waiting"}, status=202)
        assert claimed.kiosk is not None
        return web.json_response(
            {
                "state": "paired",
                "token": claimed.token,
                "kiosk": {"id": claimed.kiosk.id, "name": claimed.kiosk.name},
            }
        )

    router.add_post("/kiosk/api/pairings/claim", claim)

    async def feed(request: web.Request) -> web.StreamResponse:
        kiosk = await device_kiosk(ctx, request)
        async with ctx.db.session() as session:
            place = await service.placement_of(session, kiosk)
        built = await feeds.get(place)
        about = {
            "id": kiosk.id,
            "name": kiosk.name,
            "group": place.group,
            "heartbeat_seconds": ctx.settings.kiosk_heartbeat_seconds,
        }
        return _feed_response(request, built, {"kiosk": about})

    router.add_get("/kiosk/api/feed", feed)

    async def heartbeat(request: web.Request) -> web.StreamResponse:
        kiosk = await device_kiosk(ctx, request)
        body: HeartbeatIn = await _json_body(request, HeartbeatIn)
        beat = service.Heartbeat(
            body.app_version,
            body.content_version,
            body.uptime_seconds,
            body.last_rendered_at,
            body.cache_state,
            body.screenshot,
        )
        counts: dict[tuple[int, str], int] = {}
        for key, count in body.plays.items():
            item, _, action = key.partition(":")
            if item.isdigit():
                counts[(int(item), action)] = count
        try:
            async with ctx.db.session() as session:
                fresh = await service.get_kiosk(session, kiosk.id)
                await service.record_heartbeat(session, fresh, beat, client_address(request))
                today = utcnow().astimezone(_zone(ctx)).date()
                await service.record_plays(session, fresh, today, counts)
        except service.KioskError as exc:
            return kiosk_json_error(exc.status, str(exc))
        return web.json_response({"heartbeat_seconds": ctx.settings.kiosk_heartbeat_seconds})

    router.add_post("/kiosk/api/heartbeat", heartbeat)

    async def live(request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse(heartbeat=20.0)
        await socket.prepare(request)
        # The token comes as the first message: a browser cannot set headers on a WebSocket.
        try:
            first = await socket.receive(timeout=10)
            token = (
                str(json.loads(first.data).get("token", ""))
                if first.type == aiohttp.WSMsgType.TEXT
                else ""
            )
            kiosk = await device_kiosk(ctx, request, token)
        except (TimeoutError, ValueError, AttributeError, web.HTTPUnauthorized):
            await socket.close(code=4401, message=b"a valid kiosk device token is required")
            return socket
        async with ctx.db.session() as session:
            place = await service.placement_of(session, kiosk)
        connection = Connection(kiosk.id, place, socket)
        hub.add(connection)
        try:
            await socket.send_str(json.dumps({"type": "hello", "kiosk": kiosk.id}))
            async for _ in socket:
                pass
        finally:
            hub.remove(connection)
        return socket

    router.add_get("/kiosk/api/live", live)

    media_dir = ctx.settings.path("kiosk", "media")

    async def media(request: web.Request) -> web.StreamResponse:
        # Names are content hashes: public, unguessable, never change (cache for good).
        name = request.match_info["name"]
        path = media_dir / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(
            path, headers={"Cache-Control": "public, max-age=31536000, immutable"}
        )

    router.add_get(r"/kiosk/media/{name:[0-9a-f]{64}\.[a-z0-9]{2,5}}", media)

    async def signed_news(key: str) -> str:
        async with ctx.db.session() as session:
            published = await service.is_news_on_kiosks(session, key)
        url = news(key) if news and published else None
        if not url:
            raise web.HTTPNotFound(text="no such news clip on the kiosks")
        return str(url)

    async def news_clip(request: web.Request) -> web.StreamResponse:
        # For players that take a URL (native HLS): the redirect keeps the feed's path stable.
        raise web.HTTPFound(await signed_news(request.match_info["key"]))

    router.add_get(rf"/kiosk/news/{{key:{NEWS_KEY}}}", news_clip)

    async def news_link(request: web.Request) -> web.StreamResponse:
        # hls.js is given the signed URL itself, so the relative playlist URIs keep it.
        await device_kiosk(ctx, request)
        url = await signed_news(request.match_info["key"])
        return web.json_response({"url": url}, headers={"Cache-Control": "no-store"})

    router.add_get(rf"/kiosk/api/news/{{key:{NEWS_KEY}}}", news_link)


def mount_browser_libraries(router: web.UrlDispatcher) -> None:
    """The npm libraries the kiosk page loads: hls.js (news clips), html2canvas (screenshots)."""
    add_npm_route(router, "/kiosk/hls.min.js", "hls.js", "dist/hls.min.js")
    add_npm_route(router, "/kiosk/html2canvas.min.js", "html2canvas", "dist/html2canvas.min.js")


# The kiosk page loads only its own script and style; media and data from itself.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


# ---------------------------------------------------------------- operators' API


def mount(app: web.Application, hub: LiveHub, feeds: FeedCache) -> None:
    ctx = app[CTX]
    api = app[API]
    router = app.router

    async def list_groups(request: web.Request, identity: Identity) -> list[GroupOut]:
        async with ctx.db.session() as session:
            return [
                GroupOut.model_validate(g, from_attributes=True)
                for g in await service.list_groups(session)
            ]

    api.add(
        router,
        "GET",
        "/api/kiosk/groups",
        list_groups,
        summary="Kiosk groups",
        tag=TAG,
        response=list[GroupOut],
    )

    async def add_group(request: web.Request, identity: Identity, body: GroupIn) -> GroupOut:
        async with ctx.db.session() as session:
            try:
                group = await service.add_group(
                    session, body.code, body.name, body.district, body.street
                )
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session, identity.subject, "kiosk.group.add", group.code, client_address(request)
            )
            out = GroupOut.model_validate(group, from_attributes=True)
        await feeds.changed("group")
        return out

    api.add(
        router,
        "POST",
        "/api/kiosk/groups",
        add_group,
        summary="Add a kiosk group",
        tag=TAG,
        roles=EDITORS,
        body=GroupIn,
        response=GroupOut,
        status=201,
    )

    async def list_items(request: web.Request, identity: Identity) -> list[ItemOut]:
        async with ctx.db.session() as session:
            return [
                ItemOut.model_validate(i, from_attributes=True)
                for i in await service.list_items(session)
            ]

    api.add(
        router,
        "GET",
        "/api/kiosk/items",
        list_items,
        summary="Content items",
        tag=TAG,
        response=list[ItemOut],
    )

    async def add_item(request: web.Request, identity: Identity, body: ItemIn) -> ItemOut:
        async with ctx.db.session() as session:
            try:
                item = await service.create_item(session, _item_input(body))
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "kiosk.item.add",
                str(item.id),
                client_address(request),
                kind=item.kind,
            )
            out = ItemOut.model_validate(item, from_attributes=True)
        if body.kind is ContentKind.PORTAL:
            ctx.spawn(f"kiosk.portal.{item.id}", lambda: refresh_portal(ctx, feeds, item.id))
        await feeds.changed("item")
        await hub.publish(KioskPush(kind="content"))
        return out

    api.add(
        router,
        "POST",
        "/api/kiosk/items",
        add_item,
        summary="Add a content item",
        tag=TAG,
        roles=EDITORS,
        body=ItemIn,
        response=ItemOut,
        status=201,
    )

    async def edit_item(request: web.Request, identity: Identity, body: ItemIn) -> ItemOut:
        async with ctx.db.session() as session:
            try:
                item = await service.update_item(session, _id(request), _item_input(body))
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session, identity.subject, "kiosk.item.edit", str(item.id), client_address(request)
            )
            out = ItemOut.model_validate(item, from_attributes=True)
        await feeds.changed("content")
        await hub.publish(KioskPush(kind="content"))
        return out

    api.add(
        router,
        "PUT",
        "/api/kiosk/items/{id}",
        edit_item,
        summary="Change a content item",
        tag=TAG,
        roles=EDITORS,
        body=ItemIn,
        response=ItemOut,
    )

    async def remove_item(request: web.Request, identity: Identity) -> web.StreamResponse:
        async with ctx.db.session() as session:
            try:
                await service.delete_item(session, _id(request))
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "kiosk.item.remove",
                str(_id(request)),
                client_address(request),
            )
        await feeds.changed("content")
        await hub.publish(KioskPush(kind="content"))
        return web.Response(status=204)

    api.add(
        router,
        "DELETE",
        "/api/kiosk/items/{id}",
        remove_item,
        summary="Remove a content item",
        tag=TAG,
        roles=EDITORS,
    )

    async def upload_media(request: web.Request) -> web.StreamResponse:
        identity = identity_of(request)
        if identity is None or identity.role is None:
            raise ApiError(401, "authentication required")
        if not identity.has_role(*EDITORS):
            raise ApiError(403, "your role may not do this")
        limit = ctx.settings.kiosk_max_upload_mb * 1024 * 1024
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, f"media larger than {ctx.settings.kiosk_max_upload_mb} MB")

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_chunked(256 * 1024):
                yield chunk

        async with ctx.db.session() as session:
            try:
                media = await service.store_media(
                    session,
                    media_dir,
                    chunks(),
                    request.headers.get("Content-Type", ""),
                    request.query.get("name", ""),
                    limit,
                )
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "kiosk.media.add",
                media.file_name,
                client_address(request),
                size=media.size,
            )
            out = MediaOut(
                id=media.id,
                content_type=media.content_type,
                size=media.size,
                url=f"/kiosk/media/{media.file_name}",
            )
        return web.json_response(out.model_dump(), status=201)

    media_dir = ctx.settings.path("kiosk", "media")
    api.add_raw(
        router,
        "POST",
        "/api/kiosk/media",
        upload_media,
        summary="Upload an image or clip (body: the file; Content-Type: its type; ?name=)",
        tag=TAG,
        content_type="application/octet-stream",
    )

    async def list_playlists(request: web.Request, identity: Identity) -> list[PlaylistOut]:
        async with ctx.db.session() as session:
            return [
                PlaylistOut.model_validate(p, from_attributes=True)
                for p in await service.list_playlists(session)
            ]

    api.add(
        router,
        "GET",
        "/api/kiosk/playlists",
        list_playlists,
        summary="Playlists and schedules",
        tag=TAG,
        response=list[PlaylistOut],
    )

    async def add_playlist(
        request: web.Request, identity: Identity, body: PlaylistIn
    ) -> PlaylistOut:
        async with ctx.db.session() as session:
            try:
                playlist = await service.create_playlist(session, _playlist_input(body))
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "kiosk.playlist.add",
                playlist.name,
                client_address(request),
            )
            out = PlaylistOut.model_validate(playlist, from_attributes=True)
        await feeds.changed("content")
        await hub.publish(KioskPush(kind="content"))
        return out

    api.add(
        router,
        "POST",
        "/api/kiosk/playlists",
        add_playlist,
        summary="Add a playlist",
        tag=TAG,
        roles=EDITORS,
        body=PlaylistIn,
        response=PlaylistOut,
        status=201,
    )

    async def edit_playlist(
        request: web.Request, identity: Identity, body: PlaylistIn
    ) -> PlaylistOut:
        async with ctx.db.session() as session:
            try:
                playlist = await service.update_playlist(
                    session, _id(request), _playlist_input(body)
                )
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "kiosk.playlist.edit",
                playlist.name,
                client_address(request),
            )
            out = PlaylistOut.model_validate(playlist, from_attributes=True)
        await feeds.changed("content")
        await hub.publish(KioskPush(kind="content"))
        return out

    api.add(
        router,
        "PUT",
        "/api/kiosk/playlists/{id}",
        edit_playlist,
        summary="Change a playlist",
        tag=TAG,
        roles=EDITORS,
        body=PlaylistIn,
        response=PlaylistOut,
    )

    async def remove_playlist(request: web.Request, identity: Identity) -> web.StreamResponse:
        async with ctx.db.session() as session:
            try:
                await service.delete_playlist(session, _id(request))
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "kiosk.playlist.remove",
                str(_id(request)),
                client_address(request),
            )
        await feeds.changed("content")
        await hub.publish(KioskPush(kind="content"))
        return web.Response(status=204)

    api.add(
        router,
        "DELETE",
        "/api/kiosk/playlists/{id}",
        remove_playlist,
        summary="Remove a playlist (its items stay)",
        tag=TAG,
        roles=EDITORS,
    )

    async def fleet_board(request: web.Request, identity: Identity) -> list[KioskOut]:
        return await fleet_rows(ctx, hub)

    api.add(
        router,
        "GET",
        "/api/kiosk/fleet",
        fleet_board,
        summary="Kiosks and their state",
        tag=TAG,
        response=list[KioskOut],
    )

    async def screenshot(request: web.Request, identity: Identity) -> web.StreamResponse:
        async with ctx.db.session() as session:
            try:
                kiosk = await service.get_kiosk(session, _id(request))
            except service.KioskError as exc:
                raise _refusal(exc) from None
        found = service.screenshot_of(kiosk)
        if found is None:
            raise ApiError(404, f"kiosk {kiosk.name!r} has sent no screenshot yet")
        content_type, image = found
        return web.Response(
            body=image,
            content_type=content_type,
            headers={"Cache-Control": "private, max-age=300"},
        )

    api.add(
        router,
        "GET",
        "/api/kiosk/fleet/{id}/screenshot",
        screenshot,
        summary="The last screenshot a kiosk sent with its heartbeat (staff only)",
        tag=TAG,
    )

    async def approve(request: web.Request, identity: Identity, body: ApproveIn) -> KioskOut:
        async with ctx.db.session() as session:
            try:
                kiosk = await service.approve_pairing(session, body.code, body.name, body.group)
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "kiosk.approve",
                kiosk.name,
                client_address(request),
                group=body.group,
            )
        rows = [row for row in await fleet_rows(ctx, hub) if row.id == kiosk.id]
        return rows[0]

    api.add(
        router,
        "POST",
        "/api/kiosk/pairings/approve",
        approve,
        summary="Approve the pairing code a kiosk shows",
        tag=TAG,
        roles=EDITORS,
        body=ApproveIn,
        response=KioskOut,
        status=201,
    )

    async def reload(request: web.Request, identity: Identity) -> dict[str, bool]:
        async with ctx.db.session() as session:
            try:
                kiosk = await service.get_kiosk(session, _id(request))
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session, identity.subject, "kiosk.reload", kiosk.name, client_address(request)
            )
        await hub.publish(KioskPush(kind="reload", kiosk_ids=[kiosk.id]))
        return {"sent": True}

    api.add(
        router,
        "POST",
        "/api/kiosk/fleet/{id}/reload",
        reload,
        summary="Reload a kiosk's app",
        tag=TAG,
        roles=EDITORS,
    )

    async def revoke(request: web.Request, identity: Identity) -> dict[str, bool]:
        async with ctx.db.session() as session:
            try:
                kiosk = await service.revoke_kiosk(session, _id(request))
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session, identity.subject, "kiosk.revoke", kiosk.name, client_address(request)
            )
        return {"revoked": True}

    api.add(
        router,
        "POST",
        "/api/kiosk/fleet/{id}/revoke",
        revoke,
        summary="Revoke a kiosk's device token",
        tag=TAG,
        roles=EDITORS,
    )

    async def list_alerts(request: web.Request, identity: Identity) -> list[AlertOut]:
        async with ctx.db.session() as session:
            return [
                AlertOut.model_validate(a, from_attributes=True)
                for a in await service.list_alerts(session)
            ]

    api.add(
        router,
        "GET",
        "/api/kiosk/alerts",
        list_alerts,
        summary="Takeover alerts",
        tag=TAG,
        response=list[AlertOut],
    )

    async def add_alert(request: web.Request, identity: Identity, body: AlertIn) -> AlertOut:
        expires = (
            utcnow() + dt.timedelta(minutes=body.expires_minutes) if body.expires_minutes else None
        )
        async with ctx.db.session() as session:
            try:
                alert = await service.create_alert(
                    session,
                    headline=body.headline,
                    text=body.text,
                    severity=body.severity,
                    groups=body.groups,
                    districts=body.districts,
                    expires_at=expires,
                    created_by=identity.subject,
                )
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "kiosk.alert",
                str(alert.id),
                client_address(request),
                headline=alert.headline,
            )
        # Committed first: a kiosk that reloads on the push finds it in its feed.
        await feeds.changed("alert")
        await hub.publish(alert_push(alert))
        return AlertOut.model_validate(alert, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/kiosk/alerts",
        add_alert,
        summary="Take over kiosks with an alert",
        tag=TAG,
        roles=TAKEOVER,
        body=AlertIn,
        response=AlertOut,
        status=201,
    )

    async def cancel_alert(request: web.Request, identity: Identity) -> AlertOut:
        async with ctx.db.session() as session:
            try:
                alert = await service.cancel_alert(session, _id(request))
            except service.KioskError as exc:
                raise _refusal(exc) from None
            await audit(
                session,
                identity.subject,
                "kiosk.alert.cancel",
                str(alert.id),
                client_address(request),
            )
        await feeds.changed("alert")
        await hub.publish(alert_push(alert))
        return AlertOut.model_validate(alert, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/kiosk/alerts/{id}/cancel",
        cancel_alert,
        summary="Cancel a takeover alert",
        tag=TAG,
        roles=TAKEOVER,
        response=AlertOut,
    )

    async def portal_feed(request: web.Request, query: FeedQuery) -> web.StreamResponse:
        async with ctx.db.session() as session:
            place = Placement()
            if query.group:
                try:
                    group = await service.group_by_code(session, query.group)
                except service.KioskError as exc:
                    raise _refusal(exc) from None
                place = Placement(group.code, group.district, group.street)
        return _feed_response(request, await feeds.get(place))

    api.add(
        router,
        "GET",
        "/api/kiosk/feed",
        portal_feed,
        query=FeedQuery,
        roles=None,
        tag=TAG,
        summary="The public content feed (as a kiosk of ?group= sees it; ETag / If-None-Match)",
    )

    async def play_report(
        request: web.Request, identity: Identity, query: PlaysQuery
    ) -> web.StreamResponse:
        async with ctx.db.session() as session:
            rows = await service.plays(session, query.day_from, query.day_until)
        if request.headers.get("Accept", "").startswith("text/csv"):
            lines = ["day,kiosk,item_id,action,count"]
            lines += [
                f'{r["day"]},"{r["kiosk"].replace(chr(34), chr(34) * 2)}",{r["item_id"]},'
                f"{r['action']},{r['count']}"
                for r in rows
            ]
            return web.Response(
                text="\n".join(lines) + "\n",
                content_type="text/csv",
                headers={"Content-Disposition": "attachment; filename=kiosk-plays.csv"},
            )
        return web.json_response(rows)

    api.add(
        router,
        "GET",
        "/api/kiosk/plays",
        play_report,
        query=PlaysQuery,
        tag=TAG,
        summary="Proof of play and use per kiosk per day (Accept: text/csv to export)",
    )

    async def console_page(request: web.Request) -> Mapping[str, Any]:
        async with ctx.db.session() as session:
            items = await service.list_items(session)
            playlists = await service.list_playlists(session)
            groups = await service.list_groups(session)
            alerts = await service.list_alerts(session, 20)
        # What the edit buttons put back into the forms, as the API would give it.
        item_data = {
            i.id: ItemOut.model_validate(i, from_attributes=True).model_dump(mode="json")
            for i in items
        }
        playlist_data = {
            p.id: PlaylistOut.model_validate(p, from_attributes=True).model_dump(mode="json")
            for p in playlists
        }
        return {
            "items": items,
            "item_data": item_data,
            "playlists": playlists,
            "playlist_data": playlist_data,
            "groups": groups,
            "alerts": alerts,
            "fleet": await fleet_rows(ctx, hub),
            "kinds": [k.value for k in ContentKind],
        }

    app[CONSOLE].add_page(router, PAGE, console_page)


async def fleet_rows(ctx: AppContext, hub: LiveHub) -> list[KioskOut]:
    connected = hub.connected_ids()
    async with ctx.db.session() as session:
        rows = await service.fleet(
            session,
            dt.timedelta(seconds=ctx.settings.kiosk_heartbeat_seconds),
            dt.timedelta(seconds=ctx.settings.kiosk_stale_seconds),
        )
    return [
        KioskOut(
            id=row.kiosk.id,
            name=row.kiosk.name,
            group=row.group,
            state=row.state,
            last_seen_at=row.kiosk.last_seen_at,
            last_rendered_at=row.kiosk.last_rendered_at,
            app_version=row.kiosk.app_version,
            content_version=row.kiosk.content_version,
            uptime_seconds=row.kiosk.uptime_seconds,
            cache_state=row.kiosk.cache_state,
            connected_here=row.kiosk.id in connected,
            paired=row.kiosk.token_id is not None,
            screenshot_at=row.kiosk.screenshot_at if row.kiosk.screenshot else None,
            screenshot_url=_screenshot_url(row.kiosk),
        )
        for row in rows
    ]


def _screenshot_url(kiosk: Kiosk) -> str | None:
    if not kiosk.screenshot:
        return None
    # The time in the URL: a new screenshot is a new address (the old one may be cached).
    taken = kiosk.screenshot_at.timestamp() if kiosk.screenshot_at else 0
    return f"/api/kiosk/fleet/{kiosk.id}/screenshot?t={int(taken)}"


PORTAL_MAX_BYTES = 2 * 1024 * 1024


async def refresh_portal(ctx: AppContext, feeds: FeedCache, item_id: int) -> bool:
    """Fetch a portal page and cache its text; a failure keeps the last good copy."""
    async with ctx.db.session() as session:
        item = await session.get(ContentItem, item_id)
        url = item.details.get("portal_url") if item else None
    if not url:
        return False
    try:
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as client, client.get(url) as response:
            if response.status != 200:
                log.warning("kiosk.portal_failed", url=url, status=response.status)
                return False
            raw = await response.content.read(PORTAL_MAX_BYTES)
            page = raw.decode(response.get_encoding() or "utf-8", errors="replace")
    except (aiohttp.ClientError, TimeoutError, LookupError) as exc:
        log.warning("kiosk.portal_failed", url=url, error=str(exc))
        return False
    async with ctx.db.session() as session:
        item = await session.get(ContentItem, item_id)
        if item is None:
            return False
        service.cache_portal_page(item, page, utcnow())
    await feeds.changed("portal")
    return True


__all__ = ["HUB", "PAGE", "mount", "mount_browser_libraries", "mount_kiosk_routes"]
