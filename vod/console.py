"""The console's station forms: add, edit (with daily capture windows) and delete.

Plain HTML forms carrying the session's ``csrf_token`` (checked by core's middleware, as
for every console form), like the exchange's directory: a refused form comes back with
the reason in the reader's language, what was typed kept, status 422 (409 for a
conflict) and nothing written; a saved one redirects (303), so a reload posts nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import select

from core.auth import Identity, audit, identity_of
from core.config import Settings
from core.console import ConsolePage
from core.i18n import LANG
from core.models import Role
from core.web import CONSOLE, CTX, I18N, client_address
from vod.models import Kind, Level, Station
from vod.service import VodService
from vod.stations import WINDOW_FIELDS, StationError, check_code, parse_station_form

EDITORS = (Role.ADMIN, Role.OPERATOR)
PATH = "/console/vod"
BLANK_WINDOWS = 2  # empty rows a form offers for new capture windows

PageValues = Callable[[web.Request], Awaitable[dict[str, Any]]]


def window_rows(form: MultiDictProxy[Any]) -> list[list[str]]:
    """The capture-window rows of a submitted form (parallel fields, padded)."""
    columns = [[str(v) for v in form.getall(name, [])] for name in WINDOW_FIELDS]
    count = max(len(column) for column in columns)
    return [[column[i] if i < len(column) else "" for column in columns] for i in range(count)]


def station_form(station: Station, windows: list[Any]) -> dict[str, Any]:
    """What an edit form shows for a saved station."""
    return {
        "code": station.code,
        "name": station.name,
        "level": station.level.value,
        "kind": station.kind.value,
        "stream_url": station.stream_url,
        "retention_days": "" if station.retention_days is None else str(station.retention_days),
        "enabled": station.enabled,
        "windows": [
            [w.start_time, window_end(w.start_time, w.duration_seconds), w.weekdays, w.programme]
            for w in windows
        ],
    }


def window_end(start: str, seconds: int) -> str:
    """A window's end, HH:MM, from its start and length (windows end on their own day)."""
    minutes = int(start[:2]) * 60 + int(start[3:]) + seconds // 60
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def submitted(form: MultiDictProxy[Any], code: str) -> dict[str, Any]:
    """What was typed, to show again with the error."""
    return {
        "code": code,
        **{
            key: str(form.get(key, ""))
            for key in ("name", "level", "kind", "stream_url", "retention_days")
        },
        "enabled": form.get("enabled") == "on",
        # The rows filled in; the form adds its blank ones after them.
        "windows": [row for row in window_rows(form) if row[0].strip() or row[1].strip()],
    }


def form_choices(settings: Settings) -> dict[str, Any]:
    """What the station forms offer: levels, kinds, blank window rows, the defaults."""
    return {
        "levels": [level.value for level in Level],
        "kinds": [kind.value for kind in Kind],
        "blank_windows": BLANK_WINDOWS,
        "default_retention": settings.vod_retention_days,
        "zone_name": settings.timezone,
    }


def mount(
    app: web.Application, service: VodService, page: ConsolePage, page_values: PageValues
) -> None:
    """``page_values`` gives the main page's context, to show it again with an error."""
    ctx = app[CTX]
    console = app[CONSOLE]
    translations = app[I18N]
    router = app.router

    def editor(request: web.Request) -> Identity:
        identity = identity_of(request)
        if identity is None or identity.role is None:
            raise web.HTTPFound(f"/login?next={PATH}")
        if not identity.has_role(*EDITORS):
            raise web.HTTPForbidden(text="your role may not change the stations")
        return identity

    def explain(request: web.Request, exc: StationError) -> str:
        return translations.get(request[LANG], f"vod.error.{exc.code}").format(**exc.params)

    async def render_page(
        request: web.Request, status: int, **overrides: Any
    ) -> web.StreamResponse:
        values = await page_values(request)
        values.update(overrides)
        return await console.render(request, page.template, {"page": page, **values}, status=status)

    async def render_edit(
        request: web.Request,
        form: Mapping[str, Any],
        error: str | None = None,
        status: int = 200,
    ) -> web.StreamResponse:
        return await console.render(
            request,
            "vod/station.html",
            {"page": page, "form": form, "error": error, **form_choices(ctx.settings)},
            status=status,
        )

    async def save(request: web.Request, code: str, *, create: bool) -> web.StreamResponse:
        identity = editor(request)
        form = await request.post()
        try:
            code = check_code(code)
            data = parse_station_form(form, window_rows(form))
            async with ctx.db.session() as session:
                station = await service.save_station(session, code, data, create=create)
                await audit(
                    session,
                    identity.subject,
                    "vod.station.add" if create else "vod.station.edit",
                    code,
                    client_address(request),
                    level=data.level.value,
                    kind=data.kind.value,
                    windows=len(data.windows),
                )
                enabled, has_windows = station.enabled, bool(data.windows)
        except StationError as exc:
            if exc.status == 404:
                raise web.HTTPNotFound(text=str(exc)) from None
            shown = submitted(form, code)
            message = explain(request, exc)
            if create:
                return await render_page(
                    request, exc.status, station_error=message, station_form=shown
                )
            return await render_edit(request, shown, message, exc.status)
        if enabled and has_windows:
            await service.plan_captures()  # the next windows are planned now, not in minutes
        raise web.HTTPSeeOther(f"{PATH}?station_saved={code}#stations")

    async def add(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        return await save(request, str(form.get("code", "")), create=True)

    async def edit_page(request: web.Request) -> web.StreamResponse:
        editor(request)
        code = request.match_info["code"]
        async with ctx.db.session() as session:
            station = await session.scalar(select(Station).where(Station.code == code))
            if station is None:
                raise web.HTTPNotFound(text=f"no station {code}")
            windows = (await service.station_windows(session)).get(station.id, [])
        return await render_edit(request, station_form(station, windows))

    async def edit(request: web.Request) -> web.StreamResponse:
        return await save(request, request.match_info["code"], create=False)

    async def remove(request: web.Request) -> web.StreamResponse:
        identity = editor(request)
        code = request.match_info["code"]
        try:
            async with ctx.db.session() as session:
                await service.delete_station(session, code)
                await audit(
                    session, identity.subject, "vod.station.remove", code, client_address(request)
                )
        except StationError as exc:
            if exc.status == 404:
                raise web.HTTPNotFound(text=str(exc)) from None
            return await render_page(request, exc.status, station_error=explain(request, exc))
        raise web.HTTPSeeOther(f"{PATH}?station_deleted={code}#stations")

    async def back_to_page(request: web.Request) -> web.StreamResponse:
        # The language switch reloads the current address: for a form's answer, the page.
        raise web.HTTPFound(PATH)

    router.add_post(f"{PATH}/stations", add)
    router.add_get(f"{PATH}/stations", back_to_page)
    router.add_get(f"{PATH}/stations/{{code}}", edit_page)
    router.add_post(f"{PATH}/stations/{{code}}", edit)
    router.add_post(f"{PATH}/stations/{{code}}/remove", remove)


def page_extras(request: web.Request, settings: Settings) -> dict[str, Any]:
    """The station part of the main page: notices of the last form, an empty add form."""
    notice = None
    for key in ("station_saved", "station_deleted"):
        code = request.query.get(key, "")
        if code:
            try:
                notice = (f"vod.station.{key.removeprefix('station_')}", check_code(code))
            except StationError:
                notice = None
    return {
        "station_notice": notice,
        "station_error": None,
        "station_form": {
            "level": Level.CITY.value,
            "kind": Kind.TV.value,
            "enabled": True,
            "windows": [],
        },
        **form_choices(settings),
    }
