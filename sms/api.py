"""SMS alerts HTTP routes: thin wrappers over :mod:`sms.service`, plus provider webhooks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select

from core.api import ApiError
from core.auth import Identity, audit
from core.console import ConsolePage
from core.db import utcnow
from core.models import Role
from core.web import API, CONSOLE, CTX, client_address
from sms import cap, console, service
from sms.csv_import import CsvFormatError
from sms.engine import apply_provider_status
from sms.escalation import call_counts
from sms.models import Broadcast, DutyLogEntry, GroupKind, LogKind
from sms.runtime import SMS_RUNTIME
from sms.states import from_provider
from sms.templating import TemplateError, render

PAGE = ConsolePage(
    key="sms",
    title={"zh": "短信群发", "en": "SMS alerts"},
    summary={
        "zh": "会议通知与紧急预警短信",
        "en": "Meeting notices and urgent alerts to groups of phones",
    },
    path="/console/sms",
    template="sms/index.html",
)
OFFICERS = (Role.DUTY_OFFICER,)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class ContactIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    mobile: str = Field(min_length=3, max_length=32)
    department: str = ""
    role: str = Field("", max_length=64)
    language: str = Field("zh", pattern="^(zh|en)$")
    # The number the exchange rings on escalation (a desk extension); empty: the mobile.
    extension: str = Field("", max_length=16)


class ContactOut(BaseModel):
    id: int
    name: str
    mobile: str
    department_id: int | None = None
    active: bool = True
    role: str
    language: str
    extension: str


class CsvIn(BaseModel):
    csv: str = Field(max_length=900_000)


class ImportOut(BaseModel):
    created: int
    updated: int
    errors: list[str]


class GroupIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    department: str = ""
    role: str = Field("", max_length=64)
    roster: str = Field("", max_length=100)
    members: list[str] = Field(default_factory=list, max_length=10_000)


class GroupOut(BaseModel):
    id: int
    name: str
    kind: str


class ShiftIn(BaseModel):
    roster: str = Field(min_length=1, max_length=100)
    mobile: str
    starts_at: dt.datetime
    ends_at: dt.datetime


class TemplateIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    body: str = Field(min_length=1, max_length=service.MAX_BODY)


class TemplateOut(TemplateIn):
    id: int


class Compose(BaseModel):
    text: str = Field("", max_length=service.MAX_BODY)
    template: str = ""
    variables: dict[str, str] = Field(default_factory=dict)
    groups: list[str] = Field(default_factory=list)
    departments: list[str] = Field(default_factory=list)
    mobiles: list[str] = Field(default_factory=list, max_length=10_000)


class BroadcastIn(Compose):
    send_at: dt.datetime | None = None
    incident_id: int | None = None
    # Escalation: after this many minutes, whoever has not acknowledged is called
    # (escalate_call) and/or the alert goes to a backup group (escalate_group); once.
    escalate_after_minutes: float | None = Field(None, gt=0, le=7 * 24 * 60)
    escalate_call: bool = False
    escalate_group: str = Field("", max_length=100)


class PreviewOut(BaseModel):
    text: str
    encoding: str
    characters: int
    units: int
    segments: int
    per_part_limit: int
    recipients: int
    total_segments: int
    estimated_cost: float


class BroadcastOut(BaseModel):
    id: int
    body: str
    status: str
    created_by: str
    approved_by: str | None
    send_at: dt.datetime
    created_at: dt.datetime
    completed_at: dt.datetime | None
    encoding: str
    segments: int
    recipient_count: int
    audience: str
    incident_id: int | None
    escalate_after_seconds: int | None = None
    escalate_call: bool = False
    escalate_group: str = ""
    escalate_at: dt.datetime | None = None
    escalated_at: dt.datetime | None = None
    escalation_note: str = ""


class ProgressOut(BroadcastOut):
    counts: dict[str, int]
    calls: dict[str, int]  # escalation calls per state (pending ... answered, busy)


class CallOut(BaseModel):
    """A recipient's escalation call: its state (pending, dialling) or its outcome."""

    state: str  # pending claimed dialling answered busy no_answer failed skipped interrupted
    number: str
    attempts: int
    dial_count: int = 0  # calls dialled (the first and any after no answer or busy)
    digits: str = ""  # keys pressed during the call (1: acknowledged)
    sip_status: int | None
    detail: str
    dialled_at: dt.datetime | None
    ended_at: dt.datetime | None
    talk_seconds: float | None


class RecipientOut(BaseModel):
    id: int
    name: str
    mobile: str
    state: str
    attempts: int
    provider_sid: str | None
    error: str
    updated_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_via: str = ""  # sms (a reply) or call (1 pressed in the escalation call)
    wave: int = 0  # 0: the audience; 1: added by escalation (the backup group)
    call: CallOut | None = None


class LogIn(BaseModel):
    kind: LogKind
    title: str = Field(min_length=1, max_length=200)
    happened: str = Field("", max_length=20_000)
    actions: str = Field("", max_length=20_000)
    outcome: str = Field("", max_length=20_000)


class LogOut(LogIn):
    id: int
    author: str
    at: dt.datetime
    broadcasts: list[int]


class CapIn(BaseModel):
    xml: str = Field(max_length=cap.MAX_DOCUMENT)
    groups: list[str] = Field(default_factory=list)
    departments: list[str] = Field(default_factory=list)
    language: str = Field("zh", pattern="^(zh|en)$")
    incident_id: int | None = None


class ContactEdit(ContactIn):
    active: bool = True
    extension: str | None = Field(None, max_length=16)  # type: ignore[assignment]  # None: kept


EDITABLE_CONTACT = {"name", "mobile", "department", "role", "language", "active", "extension"}


class DeletedOut(BaseModel):
    id: int
    name: str
    mobile: str
    groups: int
    shifts: int
    deliveries: int


class MembersIn(BaseModel):
    members: list[str] = Field(default_factory=list, max_length=10_000)


class MembersOut(BaseModel):
    id: int
    name: str
    kind: str
    members: list[ContactOut]


class LogEdit(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    happened: str = Field("", max_length=20_000)
    actions: str = Field("", max_length=20_000)
    outcome: str = Field("", max_length=20_000)


class LinkIn(BaseModel):
    broadcast_id: int


async def _log_out(session: Any, entry: DutyLogEntry) -> LogOut:
    links = sorted(
        await session.scalars(select(Broadcast.id).where(Broadcast.incident_id == entry.id))
    )
    return LogOut(
        id=entry.id,
        kind=entry.kind,
        title=entry.title,
        happened=entry.happened,
        actions=entry.actions,
        outcome=entry.outcome,
        author=entry.author,
        at=entry.at,
        broadcasts=links,
    )


def _broadcast_out(broadcast: Broadcast) -> BroadcastOut:
    return BroadcastOut.model_validate(broadcast, from_attributes=True)


def _refuse(exc: service.SmsError) -> ApiError:
    return ApiError(404 if isinstance(exc, service.NotFound) else 422, str(exc))


def mount(app: web.Application) -> None:
    ctx = app[CTX]
    api = app[API]
    router = app.router

    async def console_page(request: web.Request) -> Mapping[str, Any]:
        async with ctx.db.session() as session:
            broadcasts = await service.history(session, 50)
            groups = [g.name for g in await service.list_groups(session)]
            templates = await service.list_templates(session)
        return {
            "broadcasts": broadcasts,
            "groups": groups,
            "templates": templates,
            "price": ctx.settings.sms_segment_price,
        }

    app[CONSOLE].add_page(router, PAGE, console_page)

    # ---------------------------------------------------------- directory

    async def list_contacts(request: web.Request, identity: Identity) -> list[ContactOut]:
        async with ctx.db.session() as session:
            rows = await service.list_contacts(session)
        return [ContactOut.model_validate(c, from_attributes=True) for c in rows]

    api.add(
        router,
        "GET",
        "/api/sms/contacts",
        list_contacts,
        summary="List SMS contacts",
        tag="sms",
        response=list[ContactOut],
    )

    async def add_contact(request: web.Request, identity: Identity, body: ContactIn) -> ContactOut:
        async with ctx.db.session() as session:
            try:
                contact = await service.add_contact(session, **body.model_dump())
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await audit(
                session,
                identity.subject,
                "sms.contact.add",
                contact.mobile,
                client_address(request),
            )
            return ContactOut.model_validate(contact, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/sms/contacts",
        add_contact,
        summary="Add a contact",
        tag="sms",
        roles=(Role.OPERATOR, Role.DUTY_OFFICER),
        body=ContactIn,
        response=ContactOut,
        status=201,
    )

    async def import_csv(request: web.Request, identity: Identity, body: CsvIn) -> ImportOut:
        async with ctx.db.session() as session:
            try:
                report = await service.import_contacts(session, body.csv.encode("utf-8"))
            except CsvFormatError as exc:
                raise ApiError(422, str(exc)) from None
            await audit(
                session,
                identity.subject,
                "sms.contacts.import",
                "",
                client_address(request),
                created=report.created,
                updated=report.updated,
                bad_rows=len(report.errors),
            )
        return ImportOut(
            created=report.created, updated=report.updated, errors=[str(e) for e in report.errors]
        )

    api.add(
        router,
        "POST",
        "/api/sms/contacts/import",
        import_csv,
        summary="Import contacts from CSV text; bad rows are reported by line",
        tag="sms",
        roles=(Role.OPERATOR, Role.DUTY_OFFICER),
        body=CsvIn,
        response=ImportOut,
    )

    async def add_group(request: web.Request, identity: Identity, body: GroupIn) -> GroupOut:
        async with ctx.db.session() as session:
            try:
                group = await service.add_group(
                    session,
                    body.name,
                    department=body.department,
                    role=body.role,
                    roster=body.roster,
                    members=body.members,
                )
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await audit(
                session, identity.subject, "sms.group.add", group.name, client_address(request)
            )
            return GroupOut(id=group.id, name=group.name, kind=group.kind.value)

    api.add(
        router,
        "POST",
        "/api/sms/groups",
        add_group,
        summary="Add a static, department/role or roster group",
        tag="sms",
        roles=(Role.OPERATOR, Role.DUTY_OFFICER),
        body=GroupIn,
        response=GroupOut,
        status=201,
    )

    async def list_groups(request: web.Request, identity: Identity) -> list[GroupOut]:
        async with ctx.db.session() as session:
            groups = await service.list_groups(session)
        return [GroupOut(id=g.id, name=g.name, kind=g.kind.value) for g in groups]

    api.add(
        router,
        "GET",
        "/api/sms/groups",
        list_groups,
        summary="List groups",
        tag="sms",
        response=list[GroupOut],
    )

    async def add_shift(request: web.Request, identity: Identity, body: ShiftIn) -> dict[str, int]:
        async with ctx.db.session() as session:
            try:
                shift = await service.add_shift(
                    session, body.roster, body.mobile, body.starts_at, body.ends_at
                )
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await audit(
                session, identity.subject, "sms.shift.add", body.roster, client_address(request)
            )
            return {"id": shift.id}

    api.add(
        router,
        "POST",
        "/api/sms/shifts",
        add_shift,
        summary="Put a contact on a roster",
        tag="sms",
        roles=(Role.OPERATOR, Role.DUTY_OFFICER),
        body=ShiftIn,
        status=201,
    )

    # ---------------------------------------------------------- templates and preview

    async def save_template(
        request: web.Request, identity: Identity, body: TemplateIn
    ) -> TemplateOut:
        async with ctx.db.session() as session:
            template = await service.save_template(session, body.name, body.body)
            await audit(
                session, identity.subject, "sms.template.save", body.name, client_address(request)
            )
            return TemplateOut(id=template.id, name=template.name, body=template.body)

    api.add(
        router,
        "POST",
        "/api/sms/templates",
        save_template,
        summary="Save a template",
        tag="sms",
        roles=OFFICERS,
        body=TemplateIn,
        response=TemplateOut,
        status=201,
    )

    async def list_templates(request: web.Request, identity: Identity) -> list[TemplateOut]:
        async with ctx.db.session() as session:
            rows = await service.list_templates(session)
        return [TemplateOut(id=t.id, name=t.name, body=t.body) for t in rows]

    api.add(
        router,
        "GET",
        "/api/sms/templates",
        list_templates,
        summary="List templates",
        tag="sms",
        response=list[TemplateOut],
    )

    async def composed(session: Any, body: Compose) -> tuple[str, list[Any]]:
        text = body.text
        if body.template:
            template = await service.template_by_name(session, body.template)
            try:
                text = render(template.body, body.variables)
            except TemplateError as exc:
                raise ApiError(422, str(exc)) from None
        contacts = await service.resolve_audience(
            session, groups=body.groups, departments=body.departments, mobiles=body.mobiles
        )
        return text, contacts

    async def preview(request: web.Request, identity: Identity, body: Compose) -> PreviewOut:
        async with ctx.db.session() as session:
            try:
                text, contacts = await composed(session, body)
            except service.SmsError as exc:
                raise _refuse(exc) from None
        result = service.preview(text, len(contacts), ctx.settings.sms_segment_price)
        return PreviewOut.model_validate(result, from_attributes=True)

    api.add(
        router,
        "POST",
        "/api/sms/preview",
        preview,
        summary="Encoding, segments and estimated cost of a message to an audience",
        tag="sms",
        body=Compose,
        response=PreviewOut,
    )

    # ---------------------------------------------------------- broadcasts

    async def create_broadcast(request: web.Request, identity: Identity, body: BroadcastIn) -> Any:
        if body.escalate_call and app[SMS_RUNTIME].escalation.dialer is None:
            raise ApiError(422, "escalation by call needs the telephony service (voip)")
        after = body.escalate_after_minutes
        async with ctx.db.session() as session:
            try:
                text, contacts = await composed(session, body)
                broadcast = await service.create_broadcast(
                    session,
                    body=text,
                    created_by=identity.subject,
                    contacts=contacts,
                    approval_threshold=ctx.settings.sms_approval_threshold,
                    send_at=body.send_at,
                    audience=_audience(body),
                    incident_id=body.incident_id,
                    escalate_after_seconds=max(1, round(after * 60)) if after else None,
                    escalate_call=body.escalate_call,
                    escalate_group=body.escalate_group.strip(),
                )
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await audit(
                session,
                identity.subject,
                "sms.broadcast.create",
                str(broadcast.id),
                client_address(request),
                recipients=broadcast.recipient_count,
                status=broadcast.status.value,
            )
            out = _broadcast_out(broadcast)
        app[SMS_RUNTIME].engine.wake.set()
        return out

    api.add(
        router,
        "POST",
        "/api/sms/broadcasts",
        create_broadcast,
        summary="Send (or schedule) a broadcast; large ones wait for a second officer",
        tag="sms",
        roles=OFFICERS,
        body=BroadcastIn,
        response=BroadcastOut,
        status=201,
    )

    async def list_broadcasts(request: web.Request, identity: Identity) -> list[dict[str, Any]]:
        async with ctx.db.session() as session:
            return [_broadcast_out(b) for b in await service.history(session, 100)]

    api.add(
        router,
        "GET",
        "/api/sms/broadcasts",
        list_broadcasts,
        summary="Broadcast history",
        tag="sms",
        response=list[BroadcastOut],
    )

    def broadcast_id(request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise ApiError(404, "no such broadcast") from None

    async def progress(request: web.Request, identity: Identity) -> Any:
        async with ctx.db.session() as session:
            try:
                broadcast = await service.get_broadcast(session, broadcast_id(request))
            except service.SmsError as exc:
                raise _refuse(exc) from None
            counts = await service.state_counts(session, broadcast.id)
            calls = await call_counts(session, broadcast.id)
        return ProgressOut(**_broadcast_out(broadcast).model_dump(), counts=counts, calls=calls)

    api.add(
        router,
        "GET",
        "/api/sms/broadcasts/{id}",
        progress,
        summary="A broadcast with its recipients and escalation calls counted per state",
        tag="sms",
        response=ProgressOut,
    )

    async def recipients(request: web.Request, identity: Identity) -> list[RecipientOut]:
        offset = int(request.query.get("offset", "0") or 0)
        async with ctx.db.session() as session:
            rows = await service.recipients_of(session, broadcast_id(request), 500, offset)
        return [
            RecipientOut.model_validate(recipient, from_attributes=True).model_copy(
                update={
                    "call": CallOut.model_validate(call, from_attributes=True) if call else None
                }
            )
            for recipient, call in rows
        ]

    api.add(
        router,
        "GET",
        "/api/sms/broadcasts/{id}/recipients",
        recipients,
        summary="Per-recipient delivery states and escalation calls (500 per page, ?offset=)",
        tag="sms",
        response=list[RecipientOut],
    )

    async def approve(request: web.Request, identity: Identity) -> Any:
        async with ctx.db.session() as session:
            try:
                broadcast = await service.approve_broadcast(
                    session, broadcast_id(request), identity.subject
                )
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await audit(
                session,
                identity.subject,
                "sms.broadcast.approve",
                str(broadcast.id),
                client_address(request),
            )
            out = _broadcast_out(broadcast)
        app[SMS_RUNTIME].engine.wake.set()
        return out

    api.add(
        router,
        "POST",
        "/api/sms/broadcasts/{id}/approve",
        approve,
        summary="Approve a large broadcast (a second duty officer)",
        tag="sms",
        roles=OFFICERS,
        response=BroadcastOut,
    )

    async def cancel(request: web.Request, identity: Identity) -> dict[str, int]:
        async with ctx.db.session() as session:
            try:
                spared = await service.cancel_broadcast(session, broadcast_id(request))
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await audit(
                session,
                identity.subject,
                "sms.broadcast.cancel",
                request.match_info["id"],
                client_address(request),
                spared=spared,
            )
        return {"cancelled": spared}

    api.add(
        router,
        "POST",
        "/api/sms/broadcasts/{id}/cancel",
        cancel,
        summary="Cancel what has not gone out",
        tag="sms",
        roles=OFFICERS,
    )

    # ---------------------------------------------------------- CAP

    async def import_cap(request: web.Request, identity: Identity, body: CapIn) -> Any:
        async with ctx.db.session() as session:
            try:
                alert, broadcast = await service.cap_broadcast(
                    session,
                    xml=body.xml,
                    language=body.language,
                    created_by=identity.subject,
                    groups=body.groups,
                    departments=body.departments,
                    approval_threshold=ctx.settings.sms_approval_threshold,
                    audience=_audience(body),
                    incident_id=body.incident_id,
                )
            except cap.CapError as exc:
                raise ApiError(422, f"invalid CAP 1.2: {exc}") from None
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await audit(
                session,
                identity.subject,
                "sms.cap.import",
                alert.identifier,
                client_address(request),
                broadcast=broadcast.id,
            )
            out = _broadcast_out(broadcast)
        await ctx.bus.publish(service.alert_event(alert, broadcast.id, body.xml))
        app[SMS_RUNTIME].engine.wake.set()
        return out

    api.add(
        router,
        "POST",
        "/api/sms/cap",
        import_cap,
        summary="Send a CAP 1.2 alert to an audience and publish it on the bus",
        tag="sms",
        roles=OFFICERS,
        body=CapIn,
        response=BroadcastOut,
        status=201,
    )

    async def export_cap(request: web.Request, identity: Identity) -> web.Response:
        async with ctx.db.session() as session:
            try:
                broadcast = await service.get_broadcast(session, broadcast_id(request))
            except service.SmsError as exc:
                raise _refuse(exc) from None
        document = service.broadcast_as_cap(broadcast, sender=ctx.settings.node_name or "unicomm")
        return web.Response(body=document, content_type="application/cap+xml", charset="utf-8")

    api.add(
        router,
        "GET",
        "/api/sms/broadcasts/{id}/cap",
        export_cap,
        summary="The broadcast as a CAP 1.2 document",
        tag="sms",
    )

    # ---------------------------------------------------------- duty log

    async def add_log(request: web.Request, identity: Identity, body: LogIn) -> LogOut:
        async with ctx.db.session() as session:
            entry = await service.add_log_entry(
                session, author=identity.subject, **body.model_dump()
            )
            await audit(
                session, identity.subject, "sms.dutylog.add", str(entry.id), client_address(request)
            )
            return LogOut(
                id=entry.id, author=entry.author, at=entry.at, broadcasts=[], **body.model_dump()
            )

    api.add(
        router,
        "POST",
        "/api/sms/duty-log",
        add_log,
        summary="Add a shift entry or an incident",
        tag="sms",
        roles=OFFICERS,
        body=LogIn,
        response=LogOut,
        status=201,
    )

    async def list_log(request: web.Request, identity: Identity) -> list[LogOut]:
        async with ctx.db.session() as session:
            entries = await service.duty_log(session)
        return [
            LogOut(
                id=e.id,
                kind=e.kind,
                title=e.title,
                happened=e.happened,
                actions=e.actions,
                outcome=e.outcome,
                author=e.author,
                at=e.at,
                broadcasts=links,
            )
            for e, links in entries
        ]

    api.add(
        router,
        "GET",
        "/api/sms/duty-log",
        list_log,
        summary="Duty log with the broadcasts sent for each incident",
        tag="sms",
        response=list[LogOut],
    )

    # ---------------------------------------------------------- directory and duty log edits

    def path_id(request: web.Request, what: str) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise ApiError(404, f"no such {what}") from None

    async def get_contact(request: web.Request, identity: Identity) -> ContactOut:
        async with ctx.db.session() as session:
            try:
                contact = await service.get_contact(session, path_id(request, "contact"))
            except service.SmsError as exc:
                raise _refuse(exc) from None
            return ContactOut.model_validate(contact, from_attributes=True)

    api.add(
        router,
        "GET",
        "/api/sms/contacts/{id}",
        get_contact,
        summary="One contact",
        tag="sms",
        response=ContactOut,
    )

    async def edit_contact(
        request: web.Request, identity: Identity, body: ContactEdit
    ) -> ContactOut:
        async with ctx.db.session() as session:
            try:
                contact_id = path_id(request, "contact")
                changes = await service.update_contact(
                    session, contact_id, **body.model_dump(include=EDITABLE_CONTACT)
                )
                contact = await service.get_contact(session, contact_id)
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await service.audit_contact_edit(
                session, identity.subject, client_address(request), contact, changes
            )
            return ContactOut.model_validate(contact, from_attributes=True)

    api.add(
        router,
        "PUT",
        "/api/sms/contacts/{id}",
        edit_contact,
        summary="Change a contact (past deliveries keep the name and number they went to)",
        tag="sms",
        roles=(Role.OPERATOR, Role.DUTY_OFFICER),
        body=ContactEdit,
        response=ContactOut,
    )

    async def delete_contact(request: web.Request, identity: Identity) -> DeletedOut:
        async with ctx.db.session() as session:
            try:
                gone = await service.delete_contact(session, path_id(request, "contact"))
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await service.audit_contact_delete(
                session, identity.subject, client_address(request), gone
            )
        return DeletedOut.model_validate(gone, from_attributes=True)

    api.add(
        router,
        "DELETE",
        "/api/sms/contacts/{id}",
        delete_contact,
        summary="Delete a contact, its memberships and shifts; its deliveries stay on record",
        tag="sms",
        roles=(Role.OPERATOR, Role.DUTY_OFFICER),
        response=DeletedOut,
    )

    async def group_members(request: web.Request, identity: Identity) -> MembersOut:
        async with ctx.db.session() as session:
            try:
                group = await service.get_group(session, path_id(request, "group"))
                if group.kind is GroupKind.STATIC:
                    members = await service.static_members(session, group.id)
                else:
                    members = await service.group_members(session, group, utcnow())
            except service.SmsError as exc:
                raise _refuse(exc) from None
            return MembersOut(
                id=group.id,
                name=group.name,
                kind=group.kind.value,
                members=[ContactOut.model_validate(c, from_attributes=True) for c in members],
            )

    api.add(
        router,
        "GET",
        "/api/sms/groups/{id}/members",
        group_members,
        summary="A group's members (dynamic and roster groups: as resolved now)",
        tag="sms",
        response=MembersOut,
    )

    async def set_members(request: web.Request, identity: Identity, body: MembersIn) -> MembersOut:
        async with ctx.db.session() as session:
            try:
                group, added, removed = await service.set_group_members(
                    session, path_id(request, "group"), body.members
                )
                members = await service.static_members(session, group.id)
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await service.audit_group_members(
                session, identity.subject, client_address(request), group, added, removed
            )
            return MembersOut(
                id=group.id,
                name=group.name,
                kind=group.kind.value,
                members=[ContactOut.model_validate(c, from_attributes=True) for c in members],
            )

    api.add(
        router,
        "PUT",
        "/api/sms/groups/{id}/members",
        set_members,
        summary="Set a static group's members (mobile numbers of known contacts)",
        tag="sms",
        roles=(Role.OPERATOR, Role.DUTY_OFFICER),
        body=MembersIn,
        response=MembersOut,
    )

    async def edit_log(request: web.Request, identity: Identity, body: LogEdit) -> LogOut:
        async with ctx.db.session() as session:
            try:
                entry = await service.update_log_entry(
                    session, path_id(request, "duty log entry"), **body.model_dump()
                )
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await audit(
                session,
                identity.subject,
                "sms.dutylog.edit",
                str(entry.id),
                client_address(request),
            )
            return await _log_out(session, entry)

    api.add(
        router,
        "PUT",
        "/api/sms/duty-log/{id}",
        edit_log,
        summary="Complete a duty log entry: what happened, what was done, the outcome",
        tag="sms",
        roles=OFFICERS,
        body=LogEdit,
        response=LogOut,
    )

    async def link_log(request: web.Request, identity: Identity, body: LinkIn) -> LogOut:
        async with ctx.db.session() as session:
            try:
                entry_id = path_id(request, "duty log entry")
                await service.link_broadcast(session, entry_id, body.broadcast_id)
                entry = await service.get_log_entry(session, entry_id)
            except service.SmsError as exc:
                raise _refuse(exc) from None
            await audit(
                session,
                identity.subject,
                "sms.dutylog.link",
                str(entry.id),
                client_address(request),
                broadcast=body.broadcast_id,
            )
            return await _log_out(session, entry)

    api.add(
        router,
        "POST",
        "/api/sms/duty-log/{id}/broadcasts",
        link_log,
        summary="Link a broadcast to a duty log entry (an incident's alerts)",
        tag="sms",
        roles=OFFICERS,
        body=LinkIn,
        response=LogOut,
    )

    console.mount(app)

    # ---------------------------------------------------------- provider webhooks

    async def signed_form(request: web.Request) -> dict[str, str]:
        form = await request.post()
        params = {key: str(value) for key, value in form.items()}
        if not app[SMS_RUNTIME].signature_valid(request, params):
            raise web.HTTPForbidden(text="missing or invalid X-Twilio-Signature")
        return params

    async def twilio_status(request: web.Request) -> web.Response:
        params = await signed_form(request)
        state = from_provider(params.get("MessageStatus", ""))
        try:
            recipient_id = int(request.query.get("r", ""))
        except ValueError:
            raise web.HTTPBadRequest(text="no recipient reference") from None
        if state is not None:
            await apply_provider_status(
                app[SMS_RUNTIME].engine.writer,
                recipient_id,
                params.get("MessageSid", ""),
                state,
                params.get("ErrorCode", ""),
            )
        return web.Response(status=204)

    api.add_raw(
        router,
        "POST",
        "/api/sms/twilio/status",
        twilio_status,
        summary="Twilio status callback (X-Twilio-Signature required)",
        tag="sms",
        content_type="application/x-www-form-urlencoded",
    )

    async def twilio_inbound(request: web.Request) -> web.Response:
        params = await signed_form(request)
        async with ctx.db.session() as session:
            await service.record_reply(
                session,
                provider_sid=params.get("MessageSid", ""),
                from_mobile=params.get("From", ""),
                body=params.get("Body", ""),
            )
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    api.add_raw(
        router,
        "POST",
        "/api/sms/twilio/inbound",
        twilio_inbound,
        summary="Twilio inbound SMS webhook; 1, OK or 收到 acknowledges",
        tag="sms",
        content_type="application/x-www-form-urlencoded",
    )


def _audience(body: Any) -> str:
    parts = [f"group:{name}" for name in body.groups]
    parts += [f"department:{code}" for code in body.departments]
    parts += [f"mobile:{m}" for m in getattr(body, "mobiles", [])[:5]]
    return ", ".join(parts)
