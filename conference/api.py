"""Video conference HTTP routes: the console page, the room client page, room JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from conference import service
from conference.messages import MESSAGES
from conference.models import RoomKind
from conference.runtime import ConferenceRuntime, who_is_where
from core.api import ApiError
from core.auth import Identity, audit
from core.console import ConsolePage
from core.i18n import LANG
from core.models import Role
from core.web import API, CONSOLE, CTX, client_address

STATIC = Path(__file__).parent / "static"
CONFERENCE_RUNTIME = web.AppKey("conference_runtime", ConferenceRuntime)

PAGE = ConsolePage(
    key="conference",
    title={"zh": "视频会议", "en": "Video conference"},
    summary={
        "zh": "主会场、分会场与应急指挥室",
        "en": "Main venue, sub-venues and the emergency command room",
    },
    path="/console/conference",
    template="conference/index.html",
)


class RoomIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    title: str = Field("", max_length=200)
    pin: str | None = Field(None, pattern=r"^[0-9]{4,12}$")
    adhoc: bool = False


class PresenceOut(BaseModel):
    venue: str
    role: str
    node: str


class RoomOut(BaseModel):
    name: str
    title: str
    kind: RoomKind
    has_pin: bool
    locked: bool
    main_venue: str | None
    venues: list[PresenceOut]


async def _room_out(app: web.Application, view: service.RoomView) -> RoomOut:
    present = await who_is_where(app[CTX], view.name)
    return RoomOut(
        name=view.name,
        title=view.title,
        kind=view.kind,
        has_pin=view.has_pin,
        locked=view.locked,
        main_venue=view.main_venue,
        venues=[
            PresenceOut(venue=v, role=str(r.get("role", "")), node=str(r.get("node", "")))
            for v, r in sorted(present.items())
        ],
    )


def mount(app: web.Application) -> None:
    ctx = app[CTX]
    router = app.router

    async def list_rooms(request: web.Request, identity: Identity) -> list[RoomOut]:
        async with ctx.db.session() as session:
            views = await service.list_rooms(session)
        return [await _room_out(app, view) for view in views]

    app[API].add(
        router,
        "GET",
        "/api/conference/rooms",
        list_rooms,
        summary="Rooms and who is in them now (any node)",
        tag="conference",
        response=list[RoomOut],
    )

    async def add_room(request: web.Request, identity: Identity, body: RoomIn) -> RoomOut:
        kind = RoomKind.ADHOC if body.adhoc else RoomKind.MEETING
        async with ctx.db.session() as session:
            try:
                view = await service.add_room(
                    session, body.name, pin=body.pin, kind=kind, title=body.title
                )
            except service.RoomError as exc:
                raise ApiError(409 if "exists" in str(exc) else 422, str(exc)) from None
            await audit(
                session,
                identity.subject,
                "conference.room.add",
                body.name,
                client_address(request),
                kind=kind.value,
            )
        return await _room_out(app, view)

    app[API].add(
        router,
        "POST",
        "/api/conference/rooms",
        add_room,
        summary="Add a room",
        tag="conference",
        roles=(Role.ADMIN, Role.OPERATOR, Role.DUTY_OFFICER),
        body=RoomIn,
        response=RoomOut,
        status=201,
    )

    async def console_page(request: web.Request) -> Mapping[str, Any]:
        async with ctx.db.session() as session:
            await service.ensure_command_room(session, ctx.settings.conference_command_room)
            views = await service.list_rooms(session)
        return {"rooms": [await _room_out(app, view) for view in views]}

    app[CONSOLE].add_page(router, PAGE, console_page)

    async def room_page(request: web.Request) -> web.StreamResponse:
        # Public: a room PC joins with the room's PIN; the PIN is checked on join.
        name = request.match_info["room"]
        async with ctx.db.session() as session:
            try:
                room = await service.get_room(session, name)
            except service.RoomError:
                raise web.HTTPNotFound(text=f"no room named {name}") from None
            view = service.view_of(room)
        lang = request[LANG]
        strings = {key.removeprefix("conf."): value for key, value in MESSAGES[lang].items()}
        return await app[CONSOLE].render(
            request,
            "conference/room.html",
            {
                "room": view,
                "strings_json": json.dumps(strings, ensure_ascii=False),
            },
        )

    router.add_get("/conference/{room}", room_page)
    router.add_static("/conference-static/", STATIC)
