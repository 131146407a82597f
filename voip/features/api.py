"""JSON routes of the PBX features: call settings, voicemail messages, ring groups.

Thin like :mod:`voip.api`: parse, call the feature services, audit writes. Reading
is for any signed-in staff member; changing is for administrators and operators.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.api import ApiError
from core.auth import Identity, audit
from core.models import Role
from core.web import API, CTX, client_address

from .ringgroups import RingGroup, Strategy, parse_members
from .service import PbxFeatures
from .settings import LANGUAGES, hash_pin

WRITERS = (Role.ADMIN, Role.OPERATOR)
# Who may list and hear call recordings: they hold conversations, not settings.
RECORDING_READERS = (Role.ADMIN, Role.DUTY_OFFICER)
PICKUP_GROUP = r"^[A-Za-z0-9_.-]{0,32}$"
DIALLED = r"^[0-9*#+]{0,32}$"
NUMBER = r"^[0-9]{2,8}$"


class CallSettingsIn(BaseModel):
    """Only the fields present change; an empty forwarding target turns it off."""

    model_config = ConfigDict(extra="forbid")

    dnd: bool | None = None
    forward_always: str | None = Field(None, pattern=DIALLED)
    forward_busy: str | None = Field(None, pattern=DIALLED)
    forward_no_answer: str | None = Field(None, pattern=DIALLED)
    no_answer_seconds: int | None = Field(None, ge=1, le=300)
    voicemail: bool | None = None
    voicemail_pin: str | None = Field(None, pattern=r"^[0-9]{4,12}$", description="4-12 digits")
    language: str | None = Field(None, pattern=f"^({'|'.join(LANGUAGES)})$")
    pickup_group: str | None = Field(
        None, pattern=PICKUP_GROUP, description="empty: the extension's department"
    )
    record_calls: bool | None = None


class CallSettingsOut(BaseModel):
    dnd: bool
    forward_always: str
    forward_busy: str
    forward_no_answer: str
    no_answer_seconds: int
    voicemail: bool
    voicemail_pin_set: bool
    language: str
    pickup_group: str
    record_calls: bool


class RecordingOut(BaseModel):
    id: int
    extension: str
    peer: str
    direction: str
    started_at: dt.datetime
    duration_seconds: float
    size_bytes: int


class VoicemailOut(BaseModel):
    id: int
    mailbox: str
    caller: str
    caller_name: str
    created_at: dt.datetime
    duration_seconds: float
    heard: bool


class RingGroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    strategy: Strategy = Strategy.SIMULTANEOUS
    members: list[str] = Field(min_length=1, max_length=32)
    ring_seconds: int = Field(15, ge=3, le=120)


class RingGroupOut(BaseModel):
    number: str
    name: str
    strategy: Strategy
    members: list[str]
    ring_seconds: int


def group_out(group: RingGroup) -> RingGroupOut:
    return RingGroupOut(
        number=group.number,
        name=group.name,
        strategy=group.strategy,
        members=list(group.members),
        ring_seconds=group.ring_seconds,
    )


def mount(app: web.Application, features: Callable[[], PbxFeatures]) -> None:
    ctx = app[CTX]
    api = app[API]
    router = app.router

    async def get_settings(request: web.Request, identity: Identity) -> CallSettingsOut:
        number = request.match_info["number"]
        if await features().server.accounts.get(number) is None:
            raise ApiError(404, f"no extension {number}")
        return CallSettingsOut(**features().store.get(number).public())

    api.add(
        router,
        "GET",
        "/api/voip/extensions/{number}/call-settings",
        get_settings,
        summary="An extension's DND, forwarding and voicemail settings",
        tag="voip",
        response=CallSettingsOut,
    )

    async def change_settings(
        request: web.Request, identity: Identity, body: CallSettingsIn
    ) -> CallSettingsOut:
        number = request.match_info["number"]
        changes = body.model_dump(exclude_unset=True)
        if pin := changes.pop("voicemail_pin", None):
            changes["voicemail_pin_hash"] = hash_pin(pin)
        for key in ("forward_always", "forward_busy", "forward_no_answer"):
            if changes.get(key) == number:
                raise ApiError(422, "an extension cannot forward to itself", [{"field": key}])
        saved = await features().store.update(number, **changes)
        if saved is None:
            raise ApiError(404, f"no extension {number}")
        async with ctx.db.session() as session:
            shown = sorted(key.replace("_hash", "") for key in changes)
            await audit(
                session,
                identity.subject,
                "voip.call_settings.change",
                number,
                client_address(request),
                changed=shown,
            )
        return CallSettingsOut(**saved.public())

    api.add(
        router,
        "PATCH",
        "/api/voip/extensions/{number}/call-settings",
        change_settings,
        summary="Change an extension's DND, forwarding, voicemail, pickup or recording settings",
        tag="voip",
        roles=WRITERS,
        body=CallSettingsIn,
        response=CallSettingsOut,
    )

    async def list_recordings(request: web.Request, identity: Identity) -> list[RecordingOut]:
        number = request.match_info["number"]
        if await features().server.accounts.get(number) is None:
            raise ApiError(404, f"no extension {number}")
        rows = await features().recordings.of_extension(number)
        return [RecordingOut.model_validate(row, from_attributes=True) for row in rows]

    api.add(
        router,
        "GET",
        "/api/voip/extensions/{number}/recordings",
        list_recordings,
        summary="An extension's recorded calls, newest first (date, peer, duration)",
        tag="voip",
        roles=RECORDING_READERS,
        response=list[RecordingOut],
    )

    async def recording_audio(request: web.Request, identity: Identity) -> web.StreamResponse:
        recording_id = _message_id(request)
        row = await features().recordings.get(recording_id)
        if row is None or not await asyncio.to_thread(Path(row.path).is_file):
            raise ApiError(404, "no such recording")
        async with ctx.db.session() as session:
            await audit(
                session,
                identity.subject,
                "voip.recording.download",
                str(recording_id),
                client_address(request),
                extension=row.extension,
            )
        peer = re.sub(r"[^0-9A-Za-z+_-]", "", row.peer)
        name = f"{row.extension}-{row.started_at:%Y%m%d-%H%M%S}-{peer}.wav"
        return web.FileResponse(
            Path(row.path),
            headers={
                "Content-Type": "audio/wav",
                "Content-Disposition": f'inline; filename="{name}"',
            },
        )

    api.add(
        router,
        "GET",
        "/api/voip/recordings/{id}/audio",
        recording_audio,
        summary="A call recording (stereo WAV: left the caller, right the callee); audited",
        tag="voip",
        roles=RECORDING_READERS,
    )

    async def list_voicemail(request: web.Request, identity: Identity) -> list[VoicemailOut]:
        rows = await features().voicemail.messages(request.match_info["mailbox"])
        return [VoicemailOut.model_validate(row, from_attributes=True) for row in rows]

    api.add(
        router,
        "GET",
        "/api/voip/voicemail/{mailbox}",
        list_voicemail,
        summary="The messages of a mailbox, new first",
        tag="voip",
        response=list[VoicemailOut],
    )

    async def message_audio(request: web.Request, identity: Identity) -> web.StreamResponse:
        row = await features().voicemail.get(_message_id(request))
        if row is None:
            raise ApiError(404, "no such message")
        return web.FileResponse(Path(row.path), headers={"Content-Type": "audio/wav"})

    api.add(
        router,
        "GET",
        "/api/voip/voicemail/messages/{id}/audio",
        message_audio,
        summary="A voicemail message's recording (WAV)",
        tag="voip",
    )

    async def delete_message(request: web.Request, identity: Identity) -> dict[str, bool]:
        message_id = _message_id(request)
        if not await features().voicemail.delete(message_id):
            raise ApiError(404, "no such message")
        async with ctx.db.session() as session:
            await audit(
                session,
                identity.subject,
                "voip.voicemail.delete",
                str(message_id),
                client_address(request),
            )
        return {"deleted": True}

    api.add(
        router,
        "DELETE",
        "/api/voip/voicemail/messages/{id}",
        delete_message,
        summary="Delete a voicemail message (the owner's lamp follows)",
        tag="voip",
        roles=WRITERS,
    )

    async def list_groups(request: web.Request, identity: Identity) -> list[RingGroupOut]:
        return [group_out(group) for group in features().groups.all()]

    api.add(
        router,
        "GET",
        "/api/voip/ring-groups",
        list_groups,
        summary="Ring groups",
        tag="voip",
        response=list[RingGroupOut],
    )

    async def put_group(
        request: web.Request, identity: Identity, body: RingGroupIn
    ) -> RingGroupOut:
        number = request.match_info["number"]
        if not number.isdigit() or not 2 <= len(number) <= 8:
            raise ApiError(422, "a ring group number is 2 to 8 digits", [{"field": "number"}])
        try:
            members = parse_members(",".join(body.members))
        except ValueError as exc:
            raise ApiError(422, str(exc), [{"field": "members"}]) from None
        group = RingGroup(number, body.name, body.strategy, members, body.ring_seconds)
        await features().groups.save(group)
        async with ctx.db.session() as session:
            await audit(
                session, identity.subject, "voip.ring_group.save", number, client_address(request)
            )
        return group_out(group)

    api.add(
        router,
        "PUT",
        "/api/voip/ring-groups/{number}",
        put_group,
        summary="Create or replace a ring group",
        tag="voip",
        roles=WRITERS,
        body=RingGroupIn,
        response=RingGroupOut,
    )

    async def delete_group(request: web.Request, identity: Identity) -> dict[str, bool]:
        number = request.match_info["number"]
        if not await features().groups.remove(number):
            raise ApiError(404, f"no ring group {number}")
        async with ctx.db.session() as session:
            await audit(
                session, identity.subject, "voip.ring_group.remove", number, client_address(request)
            )
        return {"deleted": True}

    api.add(
        router,
        "DELETE",
        "/api/voip/ring-groups/{number}",
        delete_group,
        summary="Remove a ring group",
        tag="voip",
        roles=WRITERS,
    )


def _message_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 12:
        raise ApiError(404, "no such message")
    return int(text)
