"""The sms console's sub-pages: contacts and groups, CAP 1.2 alerts, the duty log.

Server-rendered like the telephony pages (:mod:`voip.console`): plain forms, each with
the session's ``csrf_token``; a refused form is shown again with the reason in the
reader's language and HTTP 422, having changed nothing; a saved one is answered by a
redirect (303), so a reload does not post twice. Every change writes an audit row in
the same transaction, with the same actions as the JSON API (:mod:`sms.api`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import func, select

from core.auth import Identity, audit, identity_of
from core.console import ConsolePage, FormRefused
from core.db import utcnow
from core.i18n import LANG
from core.models import Department, Role
from core.web import CONSOLE, CTX, I18N, client_address
from sms import cap, service
from sms.models import Broadcast, DutyLogEntry, GroupKind, GroupMember, LogKind, Recipient
from sms.runtime import SMS_RUNTIME

DIRECTORY_WRITERS = (Role.OPERATOR, Role.DUTY_OFFICER)
OFFICERS = (Role.DUTY_OFFICER,)
MAX_UPLOAD = cap.MAX_DOCUMENT

DIRECTORY = ConsolePage(
    key="sms_directory",
    title={"zh": "通讯录与群组", "en": "Contacts and groups"},
    summary={"zh": "短信联系人与群组成员", "en": "SMS contacts and group members"},
    path="/console/sms/directory",
    template="sms/directory.html",
    parent="sms",
)
CAP_PAGE = ConsolePage(
    key="sms_cap",
    title={"zh": "CAP 预警", "en": "CAP alerts"},
    summary={
        "zh": "以 CAP 1.2 编写、导入、导出预警",
        "en": "Compose, import and export alerts as CAP 1.2",
    },
    path="/console/sms/cap",
    template="sms/cap.html",
    parent="sms",
)
DUTY_LOG = ConsolePage(
    key="sms_duty_log",
    title={"zh": "值班日志", "en": "Duty log"},
    summary={
        "zh": "交接班记录与事件：经过、处置、结果",
        "en": "Shift entries and incidents: what happened, what was done, the outcome",
    },
    path="/console/sms/duty-log",
    template="sms/duty_log.html",
    parent="sms",
)


def _mobiles(text: str) -> list[str]:
    return [part for part in text.replace("，", ",").replace("\n", ",").split(",") if part.strip()]


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.replace("，", ",").split(",") if part.strip()]


def mount(app: web.Application) -> None:
    ctx = app[CTX]
    console = app[CONSOLE]
    translations = app[I18N]
    translations.add(MESSAGES)
    router = app.router

    def t(request: web.Request, key: str) -> str:
        return translations.get(request[LANG], key)

    def signed_in(request: web.Request, roles: tuple[Role, ...], back: str) -> Identity:
        identity = identity_of(request)
        if identity is None or identity.role is None:
            raise web.HTTPFound(f"/login?next={back}")
        if roles and not identity.has_role(*roles):
            raise web.HTTPForbidden(text="your role may not do this")
        return identity

    def can(request: web.Request, roles: tuple[Role, ...]) -> bool:
        identity = identity_of(request)
        return identity is not None and identity.has_role(*roles)

    def path_id(request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise web.HTTPNotFound() from None

    async def refused(
        request: web.Request,
        page: ConsolePage,
        template: str,
        values: dict[str, Any],
        error: FormRefused,
    ) -> web.Response:
        text = t(request, error.key)
        detail = error.params.get("detail", "")
        values["error"] = f"{text}: {detail}" if detail else text
        return await console.render(request, template, {"page": page, **values}, status=422)

    async def form_of(request: web.Request) -> dict[str, str]:
        form = await request.post()
        return {key: str(value) for key, value in form.items() if isinstance(value, str)}

    # ------------------------------------------------------------------ directory

    async def directory_values(request: web.Request) -> dict[str, Any]:
        async with ctx.db.session() as session:
            contacts = await service.list_contacts(session, 2000)
            groups = await service.list_groups(session)
            counts = dict(
                (
                    await session.execute(
                        select(GroupMember.group_id, func.count()).group_by(GroupMember.group_id)
                    )
                ).all()
            )
            departments = list(await session.scalars(select(Department).order_by(Department.code)))
        codes = {d.id: d.code for d in departments}
        return {
            "contacts": contacts,
            "groups": groups,
            "member_counts": counts,
            "departments": departments,
            "department_codes": codes,
            "can_edit": can(request, DIRECTORY_WRITERS),
            "notice": request.query.get("saved", "")[:40],
            "deleted": request.query.get("deleted", "")[:40],
            "error": None,
            "form": {},
        }

    async def directory_page(request: web.Request) -> Mapping[str, Any]:
        return await directory_values(request)

    console.add_page(router, DIRECTORY, directory_page)

    def saved(path: str, what: str) -> web.HTTPSeeOther:
        return web.HTTPSeeOther(f"{path}?saved={quote(what)}")

    async def add_contact(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, DIRECTORY_WRITERS, DIRECTORY.path)
        form = await form_of(request)
        try:
            async with ctx.db.session() as session:
                try:
                    contact = await service.add_contact(
                        session,
                        name=form.get("name", "").strip(),
                        mobile=form.get("mobile", ""),
                        department=form.get("department", ""),
                        role=form.get("role", "")[:64],
                        language="en" if form.get("language") == "en" else "zh",
                        extension=form.get("extension", "")[:16],
                    )
                except service.SmsError as exc:
                    raise FormRefused("sms.console.error.contact", detail=str(exc)) from None
                await audit(
                    session,
                    identity.subject,
                    "sms.contact.add",
                    contact.mobile,
                    client_address(request),
                )
                mobile = contact.mobile
        except FormRefused as error:
            values = await directory_values(request)
            values["form"] = form
            return await refused(request, DIRECTORY, DIRECTORY.template, values, error)
        raise saved(DIRECTORY.path, mobile)

    async def contact_values(request: web.Request, contact_id: int) -> dict[str, Any]:
        async with ctx.db.session() as session:
            try:
                contact = await service.get_contact(session, contact_id)
            except service.NotFound:
                raise web.HTTPNotFound(text=f"no contact {contact_id}") from None
            departments = list(await session.scalars(select(Department).order_by(Department.code)))
            deliveries = int(
                await session.scalar(
                    select(func.count())
                    .select_from(Recipient)
                    .where(Recipient.contact_id == contact.id)
                )
                or 0
            )
            groups = list(
                await session.scalars(
                    select(GroupMember.group_id).where(GroupMember.contact_id == contact.id)
                )
            )
        return {
            "page": DIRECTORY,
            "contact": contact,
            "departments": departments,
            "department_code": next(
                (d.code for d in departments if d.id == contact.department_id), ""
            ),
            "deliveries": deliveries,
            "group_count": len(groups),
            "can_edit": can(request, DIRECTORY_WRITERS),
            "error": None,
        }

    async def contact_page(request: web.Request) -> web.StreamResponse:
        signed_in(request, (), DIRECTORY.path)
        values = await contact_values(request, path_id(request))
        return await console.render(request, "sms/contact.html", values)

    async def edit_contact(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, DIRECTORY_WRITERS, DIRECTORY.path)
        contact_id = path_id(request)
        form = await form_of(request)
        try:
            async with ctx.db.session() as session:
                try:
                    changes = await service.update_contact(
                        session,
                        contact_id,
                        name=form.get("name", ""),
                        mobile=form.get("mobile", ""),
                        department=form.get("department", ""),
                        role=form.get("role", "")[:64],
                        language="en" if form.get("language") == "en" else "zh",
                        active=form.get("active") == "on",
                        extension=form.get("extension", "")[:16],
                    )
                except service.NotFound:
                    raise web.HTTPNotFound(text=f"no contact {contact_id}") from None
                except service.SmsError as exc:
                    raise FormRefused("sms.console.error.contact", detail=str(exc)) from None
                contact = await service.get_contact(session, contact_id)
                mobile = contact.mobile
                await service.audit_contact_edit(
                    session, identity.subject, client_address(request), contact, changes
                )
        except FormRefused as error:
            values = await contact_values(request, contact_id)
            return await refused(request, DIRECTORY, "sms/contact.html", values, error)
        raise saved(DIRECTORY.path, mobile)

    async def delete_contact(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, DIRECTORY_WRITERS, DIRECTORY.path)
        contact_id = path_id(request)
        async with ctx.db.session() as session:
            try:
                gone = await service.delete_contact(session, contact_id)
            except service.NotFound:
                raise web.HTTPNotFound(text=f"no contact {contact_id}") from None
            await service.audit_contact_delete(
                session, identity.subject, client_address(request), gone
            )
        raise web.HTTPSeeOther(f"{DIRECTORY.path}?deleted={quote(gone.mobile)}")

    async def add_group(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, DIRECTORY_WRITERS, DIRECTORY.path)
        form = await form_of(request)
        try:
            name = form.get("name", "").strip()[:100]
            if not name:
                raise FormRefused(
                    "sms.console.error.group", detail=t(request, "sms.console.name_needed")
                )
            async with ctx.db.session() as session:
                try:
                    group = await service.add_group(
                        session,
                        name,
                        department=form.get("department", ""),
                        role=form.get("role", "").strip()[:64],
                        roster=form.get("roster", "").strip()[:100],
                        members=_mobiles(form.get("members", "")),
                    )
                except service.SmsError as exc:
                    raise FormRefused("sms.console.error.group", detail=str(exc)) from None
                await audit(
                    session, identity.subject, "sms.group.add", group.name, client_address(request)
                )
        except FormRefused as error:
            values = await directory_values(request)
            values["form"] = form
            return await refused(request, DIRECTORY, DIRECTORY.template, values, error)
        raise saved(DIRECTORY.path, name)

    async def group_values(request: web.Request, group_id: int) -> dict[str, Any]:
        async with ctx.db.session() as session:
            try:
                group = await service.get_group(session, group_id)
            except service.NotFound:
                raise web.HTTPNotFound(text=f"no group {group_id}") from None
            if group.kind is GroupKind.STATIC:
                members = await service.static_members(session, group.id)
            else:
                members = await service.group_members(session, group, utcnow())
            department = (
                await session.get(Department, group.department_id)
                if group.department_id is not None
                else None
            )
        return {
            "page": DIRECTORY,
            "group": group,
            "members": members,
            "department": department,
            "members_text": "\n".join(c.mobile for c in members),
            "can_edit": can(request, DIRECTORY_WRITERS) and group.kind is GroupKind.STATIC,
            "error": None,
        }

    async def group_page(request: web.Request) -> web.StreamResponse:
        signed_in(request, (), DIRECTORY.path)
        values = await group_values(request, path_id(request))
        return await console.render(request, "sms/group.html", values)

    async def set_members(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, DIRECTORY_WRITERS, DIRECTORY.path)
        group_id = path_id(request)
        form = await form_of(request)
        try:
            async with ctx.db.session() as session:
                try:
                    group, added, removed = await service.set_group_members(
                        session, group_id, _mobiles(form.get("members", ""))
                    )
                except service.NotFound as exc:
                    if "group" in str(exc):
                        raise web.HTTPNotFound(text=str(exc)) from None
                    raise FormRefused("sms.console.error.members", detail=str(exc)) from None
                except service.SmsError as exc:
                    raise FormRefused("sms.console.error.members", detail=str(exc)) from None
                name = group.name
                await service.audit_group_members(
                    session, identity.subject, client_address(request), group, added, removed
                )
        except FormRefused as error:
            values = await group_values(request, group_id)
            values["members_text"] = form.get("members", "")
            return await refused(request, DIRECTORY, "sms/group.html", values, error)
        raise saved(DIRECTORY.path, name)

    # ------------------------------------------------------------------ CAP 1.2

    async def cap_values(request: web.Request) -> dict[str, Any]:
        async with ctx.db.session() as session:
            broadcasts = await service.history(session, 50)
            groups = [g.name for g in await service.list_groups(session)]
            incidents = [entry for entry, _ in await service.duty_log(session, 50)]
        return {
            "broadcasts": broadcasts,
            "groups": groups,
            "incidents": incidents,
            "categories": cap.CATEGORY,
            "urgencies": cap.URGENCY,
            "severities": cap.SEVERITY,
            "certainties": cap.CERTAINTY,
            "statuses": cap.STATUS,
            "can_send": can(request, OFFICERS),
            "error": None,
            "error_form": "",
            "form": {},
        }

    async def cap_page(request: web.Request) -> Mapping[str, Any]:
        return await cap_values(request)

    console.add_page(router, CAP_PAGE, cap_page)

    async def send_cap(
        request: web.Request, identity: Identity, xml: str, form: Mapping[str, str]
    ) -> int:
        """Validate and send; :class:`FormRefused` (nothing written) when the alert is refused."""
        groups = [g for g in _names(form.get("groups", "")) if g]
        departments = _names(form.get("departments", ""))
        language = "en" if form.get("language") == "en" else "zh"
        incident = form.get("incident_id", "").strip()
        audience = ", ".join(
            [f"group:{g}" for g in groups] + [f"department:{d}" for d in departments]
        )
        async with ctx.db.session() as session:
            try:
                alert, broadcast = await service.cap_broadcast(
                    session,
                    xml=xml,
                    language=language,
                    created_by=identity.subject,
                    groups=groups,
                    departments=departments,
                    approval_threshold=ctx.settings.sms_approval_threshold,
                    audience=audience,
                    incident_id=int(incident) if incident.isdigit() else None,
                )
            except cap.CapError as exc:
                raise FormRefused("sms.console.error.cap", detail=str(exc)) from None
            except service.SmsError as exc:
                raise FormRefused("sms.console.error.audience", detail=str(exc)) from None
            await audit(
                session,
                identity.subject,
                "sms.cap.import",
                alert.identifier,
                client_address(request),
                broadcast=broadcast.id,
            )
            broadcast_id = broadcast.id
        await ctx.bus.publish(service.alert_event(alert, broadcast_id, xml))
        app[SMS_RUNTIME].engine.wake.set()
        return broadcast_id

    async def cap_form(request: web.Request) -> dict[str, str]:
        """The form's fields, the multipart file's text included (as ``xml``)."""
        if request.content_length is not None and request.content_length > MAX_UPLOAD + 65536:
            raise FormRefused("sms.console.error.cap", detail=f"larger than {MAX_UPLOAD} bytes")
        form = await request.post()
        values: dict[str, str] = {}
        groups: list[str] = []
        for key, value in form.items():
            if isinstance(value, str):
                if key == "groups":
                    groups.append(value)
                else:
                    values[key] = value
            elif key == "file" and isinstance(value, web.FileField) and value.filename:
                data = value.file.read(MAX_UPLOAD + 1)
                if len(data) > MAX_UPLOAD:
                    raise FormRefused(
                        "sms.console.error.cap", detail=f"larger than {MAX_UPLOAD} bytes"
                    )
                try:
                    values["xml"] = data.decode("utf-8-sig")
                except UnicodeDecodeError:
                    raise FormRefused(
                        "sms.console.error.cap", detail="the file is not UTF-8 text"
                    ) from None
        values["groups"] = ",".join(groups)
        return values

    async def compose_cap(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, OFFICERS, CAP_PAGE.path)
        form: dict[str, str] = {}
        try:
            form = await cap_form(request)
            language = "en" if form.get("language") == "en" else "zh"
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            alert = cap.CapAlert(
                identifier=f"unicomm-{uuid.uuid4().hex[:16]}",
                sender=(ctx.settings.node_name or "unicomm").replace(" ", "_"),
                sent=now,
                status=form.get("status", "Actual"),
                info=[
                    cap.CapInfo(
                        event=form.get("event", "").strip(),
                        urgency=form.get("urgency", ""),
                        severity=form.get("severity", ""),
                        certainty=form.get("certainty", ""),
                        category=form.get("category", ""),
                        language="en-US" if language == "en" else "zh-CN",
                        headline=form.get("headline", "").strip(),
                        description=form.get("description", "").strip(),
                        instruction=form.get("instruction", "").strip(),
                        area=form.get("area", "").strip(),
                    )
                ],
            )
            # Built, then read back by the same parser as an import: one set of rules.
            xml = cap.build(alert).decode("utf-8")
            broadcast_id = await send_cap(request, identity, xml, form)
        except FormRefused as error:
            values = await cap_values(request)
            values["form"] = form
            values["error_form"] = "compose"
            return await refused(request, CAP_PAGE, CAP_PAGE.template, values, error)
        raise web.HTTPSeeOther(f"/console/sms#b{broadcast_id}")

    async def import_cap(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, OFFICERS, CAP_PAGE.path)
        form: dict[str, str] = {}
        try:
            form = await cap_form(request)
            xml = form.get("xml", "").strip()
            if not xml:
                raise FormRefused(
                    "sms.console.error.cap", detail=t(request, "sms.console.no_document")
                )
            broadcast_id = await send_cap(request, identity, xml, form)
        except FormRefused as error:
            values = await cap_values(request)
            values["form"] = form
            values["error_form"] = "import"
            return await refused(request, CAP_PAGE, CAP_PAGE.template, values, error)
        raise web.HTTPSeeOther(f"/console/sms#b{broadcast_id}")

    async def export_cap(request: web.Request) -> web.StreamResponse:
        signed_in(request, (), CAP_PAGE.path)
        broadcast_id = path_id(request)
        async with ctx.db.session() as session:
            try:
                broadcast = await service.get_broadcast(session, broadcast_id)
            except service.NotFound:
                raise web.HTTPNotFound(text=f"no broadcast {broadcast_id}") from None
        document = service.broadcast_as_cap(broadcast, sender=ctx.settings.node_name or "unicomm")
        return web.Response(
            body=document,
            content_type="application/cap+xml",
            charset="utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="broadcast-{broadcast_id}.cap.xml"'
            },
        )

    # ------------------------------------------------------------------ duty log

    async def log_values(request: web.Request) -> dict[str, Any]:
        async with ctx.db.session() as session:
            entries = await service.duty_log(session, 200)
            broadcasts = await service.history(session, 50)
        return {
            "entries": entries,
            "broadcasts": broadcasts,
            "kinds": list(LogKind),
            "can_edit": can(request, OFFICERS),
            "notice": request.query.get("saved", "")[:16],
            "error": None,
            "form": {},
        }

    async def log_page(request: web.Request) -> Mapping[str, Any]:
        return await log_values(request)

    console.add_page(router, DUTY_LOG, log_page)

    def broadcast_ids(text: str) -> list[int]:
        ids = []
        for part in _names(text.replace("#", "")):
            if not part.isdigit():
                raise FormRefused("sms.console.error.link", detail=part)
            ids.append(int(part))
        return ids

    async def add_log(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, OFFICERS, DUTY_LOG.path)
        form = await form_of(request)
        try:
            kind = form.get("kind", "")
            if kind not in {k.value for k in LogKind}:
                raise FormRefused("sms.console.error.entry", detail=kind)
            title = form.get("title", "").strip()[:200]
            if not title:
                raise FormRefused(
                    "sms.console.error.entry", detail=t(request, "sms.console.title_needed")
                )
            links = broadcast_ids(form.get("broadcasts", ""))
            async with ctx.db.session() as session:
                entry = await service.add_log_entry(
                    session,
                    kind=LogKind(kind),
                    title=title,
                    author=identity.subject,
                    happened=form.get("happened", "")[:20_000],
                    actions=form.get("actions", "")[:20_000],
                    outcome=form.get("outcome", "")[:20_000],
                )
                try:
                    for broadcast_id in links:
                        await service.link_broadcast(session, entry.id, broadcast_id)
                except service.SmsError as exc:
                    # The entry is not kept either: the session rolls back as a whole.
                    raise FormRefused("sms.console.error.link", detail=str(exc)) from None
                await audit(
                    session,
                    identity.subject,
                    "sms.dutylog.add",
                    str(entry.id),
                    client_address(request),
                    broadcasts=links,
                )
                entry_id = entry.id
        except FormRefused as error:
            values = await log_values(request)
            values["form"] = form
            return await refused(request, DUTY_LOG, DUTY_LOG.template, values, error)
        raise saved(DUTY_LOG.path, str(entry_id))

    async def entry_values(request: web.Request, entry_id: int) -> dict[str, Any]:
        async with ctx.db.session() as session:
            entry = await session.get(DutyLogEntry, entry_id)
            if entry is None:
                raise web.HTTPNotFound(text=f"no duty log entry {entry_id}")
            links = sorted(
                await session.scalars(select(Broadcast.id).where(Broadcast.incident_id == entry_id))
            )
            broadcasts = await service.history(session, 50)
        return {
            "page": DUTY_LOG,
            "entry": entry,
            "links": links,
            "broadcasts": broadcasts,
            "can_edit": can(request, OFFICERS),
            "error": None,
        }

    async def entry_page(request: web.Request) -> web.StreamResponse:
        signed_in(request, (), DUTY_LOG.path)
        values = await entry_values(request, path_id(request))
        return await console.render(request, "sms/entry.html", values)

    async def edit_log(request: web.Request) -> web.StreamResponse:
        identity = signed_in(request, OFFICERS, DUTY_LOG.path)
        entry_id = path_id(request)
        form = await form_of(request)
        try:
            async with ctx.db.session() as session:
                try:
                    await service.update_log_entry(
                        session,
                        entry_id,
                        title=form.get("title", "")[:200],
                        happened=form.get("happened", "")[:20_000],
                        actions=form.get("actions", "")[:20_000],
                        outcome=form.get("outcome", "")[:20_000],
                    )
                    for broadcast_id in broadcast_ids(form.get("broadcasts", "")):
                        await service.link_broadcast(session, entry_id, broadcast_id)
                except service.NotFound as exc:
                    if "duty log" in str(exc):
                        raise web.HTTPNotFound(text=str(exc)) from None
                    raise FormRefused("sms.console.error.link", detail=str(exc)) from None
                except service.SmsError as exc:
                    raise FormRefused("sms.console.error.entry", detail=str(exc)) from None
                await audit(
                    session,
                    identity.subject,
                    "sms.dutylog.edit",
                    str(entry_id),
                    client_address(request),
                    broadcasts=form.get("broadcasts", "")[:200],
                )
        except FormRefused as error:
            values = await entry_values(request, entry_id)
            return await refused(request, DUTY_LOG, "sms/entry.html", values, error)
        raise saved(DUTY_LOG.path, str(entry_id))

    async def back(request: web.Request) -> web.StreamResponse:
        # The language switch reloads a form's address: show its page instead.
        target = {"directory": DIRECTORY.path, "cap": CAP_PAGE.path, "duty-log": DUTY_LOG.path}
        raise web.HTTPFound(target[request.path.split("/")[3]])

    base = "/console/sms"
    router.add_post(f"{DIRECTORY.path}/contacts", add_contact)
    router.add_get(f"{DIRECTORY.path}/contacts/{{id}}", contact_page)
    router.add_post(f"{DIRECTORY.path}/contacts/{{id}}", edit_contact)
    router.add_post(f"{DIRECTORY.path}/contacts/{{id}}/delete", delete_contact)
    router.add_post(f"{DIRECTORY.path}/groups", add_group)
    router.add_get(f"{DIRECTORY.path}/groups/{{id}}", group_page)
    router.add_post(f"{DIRECTORY.path}/groups/{{id}}", set_members)
    router.add_post(f"{CAP_PAGE.path}/compose", compose_cap)
    router.add_post(f"{CAP_PAGE.path}/import", import_cap)
    router.add_get(f"{base}/broadcasts/{{id}}/cap", export_cap)
    router.add_post(DUTY_LOG.path, add_log)
    router.add_get(f"{DUTY_LOG.path}/{{id}}", entry_page)
    router.add_post(f"{DUTY_LOG.path}/{{id}}", edit_log)
    for path in (
        f"{DIRECTORY.path}/contacts",
        f"{DIRECTORY.path}/groups",
        f"{CAP_PAGE.path}/compose",
        f"{CAP_PAGE.path}/import",
    ):
        router.add_get(path, back)


MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "sms.console.saved": "Saved: {what}",
        "sms.console.deleted": (
            "Deleted {what}; the messages already sent to it stay in the history."
        ),
        "sms.console.contacts": "Contacts",
        "sms.console.add_contact": "Add a contact",
        "sms.console.department": "Department",
        "sms.console.role": "Role",
        "sms.console.language": "Language",
        "sms.console.active": "Active (receives alerts)",
        "sms.console.extension": "Desk extension (escalation calls; empty: the mobile)",
        "sms.console.inactive": "inactive",
        "sms.console.edit_contact": "Edit contact",
        "sms.console.delete_contact": "Delete contact",
        "sms.console.delete_confirm": (
            "Delete this contact? Past deliveries keep the name and number they were sent to."
        ),
        "sms.console.deliveries": (
            "Messages sent to this contact so far: {count} (kept after a deletion)."
        ),
        "sms.console.memberships": "Static groups: {count}",
        "sms.console.groups": "Groups",
        "sms.console.add_group": "Add a group",
        "sms.console.group_kind": "Kind",
        "sms.console.kind.static": "static (a list)",
        "sms.console.kind.dynamic": "department/role",
        "sms.console.kind.roster": "duty roster",
        "sms.console.members": "Members",
        "sms.console.members_hint": "Mobile numbers of contacts, one per line or comma separated",
        "sms.console.group_rule": "Department, role or roster (for a dynamic or roster group)",
        "sms.console.roster": "Roster",
        "sms.console.edit_members": "Edit members",
        "sms.console.members_follow": (
            "The members of this group follow its rule; they are listed as they are now."
        ),
        "sms.console.back": "Back",
        "sms.console.name_needed": "a name is required",
        "sms.console.title_needed": "a title is required",
        "sms.console.no_document": "choose a CAP XML file or paste the document",
        "sms.console.error.contact": "The contact was not saved",
        "sms.console.error.group": "The group was not saved",
        "sms.console.error.members": "The members were not changed",
        "sms.console.error.cap": "Invalid CAP 1.2 document; nothing was sent",
        "sms.console.error.audience": "The alert was not sent",
        "sms.console.error.entry": "The entry was not saved",
        "sms.console.error.link": "The entry was not saved; check the broadcast numbers",
        "sms.console.cap_compose": "Compose an alert as CAP 1.2",
        "sms.console.cap_import": "Import a CAP 1.2 file",
        "sms.console.cap_export": "Export a broadcast as CAP 1.2",
        "sms.console.cap_file": "CAP XML file",
        "sms.console.cap_paste": "or paste the XML",
        "sms.console.event": "Event",
        "sms.console.headline": "Headline",
        "sms.console.description": "Description",
        "sms.console.instruction": "Instruction",
        "sms.console.area": "Area",
        "sms.console.category": "Category",
        "sms.console.urgency": "Urgency",
        "sms.console.severity": "Severity",
        "sms.console.certainty": "Certainty",
        "sms.console.cap_status": "Status",
        "sms.console.text_language": "Language of the text",
        "sms.console.audience": "Audience",
        "sms.console.departments": "Department codes (comma separated)",
        "sms.console.incident": "For duty log entry",
        "sms.console.no_incident": "(none)",
        "sms.console.send_cap": "Send alert",
        "sms.console.import_send": "Validate and send",
        "sms.console.download": "CAP XML",
        "sms.console.officers_only": "Only duty officers send alerts.",
        "sms.console.entries": "Entries",
        "sms.console.add_entry": "New entry",
        "sms.console.kind": "Kind",
        "sms.console.kind.shift": "Shift entry",
        "sms.console.kind.incident": "Incident",
        "sms.console.title": "Title",
        "sms.console.happened": "What happened",
        "sms.console.actions": "What was done",
        "sms.console.outcome": "Outcome",
        "sms.console.linked": "Broadcasts",
        "sms.console.link_hint": "Broadcast numbers to link (comma separated)",
        "sms.console.author": "Author",
        "sms.console.at": "When",
        "sms.console.edit_entry": "Edit entry",
        "sms.console.recent": "Recent broadcasts",
    },
    "zh": {
        "sms.console.saved": "已保存：{what}",
        "sms.console.deleted": "已删除 {what}；已发给该联系人的短信仍保留在发送记录中。",
        "sms.console.contacts": "联系人",
        "sms.console.add_contact": "添加联系人",
        "sms.console.department": "部门",
        "sms.console.role": "岗位",
        "sms.console.language": "语言",
        "sms.console.active": "启用（接收预警）",
        "sms.console.extension": "座机分机（升级电话拨打；留空则拨手机）",
        "sms.console.inactive": "已停用",
        "sms.console.edit_contact": "编辑联系人",
        "sms.console.delete_contact": "删除联系人",
        "sms.console.delete_confirm": "确定删除该联系人？历史发送记录仍保留当时的姓名和号码。",
        "sms.console.deliveries": "已向该联系人发送 {count} 条短信（删除后记录仍保留）。",
        "sms.console.memberships": "所属静态群组：{count}",
        "sms.console.groups": "群组",
        "sms.console.add_group": "添加群组",
        "sms.console.group_kind": "类型",
        "sms.console.kind.static": "静态（名单）",
        "sms.console.kind.dynamic": "按部门/岗位",
        "sms.console.kind.roster": "值班表",
        "sms.console.members": "成员",
        "sms.console.members_hint": "联系人的手机号码，每行一个或以逗号分隔",
        "sms.console.group_rule": "部门、岗位或值班表（动态群组或值班群组）",
        "sms.console.roster": "值班表",
        "sms.console.edit_members": "编辑成员",
        "sms.console.members_follow": "该群组成员由规则决定，以下为当前成员。",
        "sms.console.back": "返回",
        "sms.console.name_needed": "名称不能为空",
        "sms.console.title_needed": "标题不能为空",
        "sms.console.no_document": "请选择 CAP XML 文件或粘贴文档内容",
        "sms.console.error.contact": "联系人未保存",
        "sms.console.error.group": "群组未保存",
        "sms.console.error.members": "成员未更改",
        "sms.console.error.cap": "CAP 1.2 文档无效，未发送任何短信",
        "sms.console.error.audience": "预警未发送",
        "sms.console.error.entry": "日志未保存",
        "sms.console.error.link": "日志未保存，请检查短信批次编号",
        "sms.console.cap_compose": "以 CAP 1.2 编写预警",
        "sms.console.cap_import": "导入 CAP 1.2 文件",
        "sms.console.cap_export": "将发送批次导出为 CAP 1.2",
        "sms.console.cap_file": "CAP XML 文件",
        "sms.console.cap_paste": "或粘贴 XML",
        "sms.console.event": "事件",
        "sms.console.headline": "标题",
        "sms.console.description": "描述",
        "sms.console.instruction": "防御指引",
        "sms.console.area": "区域",
        "sms.console.category": "类别",
        "sms.console.urgency": "紧急程度",
        "sms.console.severity": "严重程度",
        "sms.console.certainty": "确定程度",
        "sms.console.cap_status": "状态",
        "sms.console.text_language": "短信语言",
        "sms.console.audience": "接收对象",
        "sms.console.departments": "部门代码（逗号分隔）",
        "sms.console.incident": "关联值班日志",
        "sms.console.no_incident": "（无）",
        "sms.console.send_cap": "发送预警",
        "sms.console.import_send": "校验并发送",
        "sms.console.download": "CAP XML",
        "sms.console.officers_only": "只有值班员可以发送预警。",
        "sms.console.entries": "日志",
        "sms.console.add_entry": "新建日志",
        "sms.console.kind": "类型",
        "sms.console.kind.shift": "交接班记录",
        "sms.console.kind.incident": "事件",
        "sms.console.title": "标题",
        "sms.console.happened": "事件经过",
        "sms.console.actions": "处置措施",
        "sms.console.outcome": "处置结果",
        "sms.console.linked": "关联短信",
        "sms.console.link_hint": "要关联的短信批次编号（逗号分隔）",
        "sms.console.author": "记录人",
        "sms.console.at": "时间",
        "sms.console.edit_entry": "编辑日志",
        "sms.console.recent": "最近发送",
    },
}
