"""SMS alerts logic, free of HTTP: directory, templates, broadcasts, replies, duty log.

Every function takes an open session and leaves committing to the caller, so an
API handler or a CLI command writes the change and its audit entry together. The
directory's audit entries are shaped here once (``audit_*``), for the JSON API and
the console alike.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import audit
from core.db import utcnow
from core.models import Department
from sms import cap, segments
from sms.csv_import import ContactRow, RowError, parse_contacts
from sms.engine import aware
from sms.escalation import cancel_calls
from sms.events import AlertPublished
from sms.models import (
    Broadcast,
    BroadcastStatus,
    Contact,
    DutyLogEntry,
    DutyShift,
    EscalationCall,
    Group,
    GroupKind,
    GroupMember,
    InboundMessage,
    LogKind,
    Recipient,
    Template,
)
from sms.phone import InvalidNumber, normalise_mobile
from sms.states import DeliveryState, sources_of

# Replies that acknowledge an alert: digits, English, Chinese (case and spaces ignored).
ACK_WORDS = frozenset({"1", "ok", "okay", "yes", "y", "收到", "已收到", "好", "确认", "收"})
MAX_BODY = 1600  # Twilio's limit for one message body
MAX_ESCALATION_SECONDS = 7 * 24 * 3600
EXTENSION = re.compile(r"^[0-9]{2,16}$")


class SmsError(ValueError):
    """A request the directory or the broadcaster refuses; the message says why."""


class NotFound(SmsError):
    pass


# ---------------------------------------------------------------- directory


async def department_by_code_or_name(session: AsyncSession, text: str) -> Department | None:
    return await session.scalar(
        select(Department).where(or_(Department.code == text, Department.name == text)).limit(1)
    )


async def add_contact(
    session: AsyncSession,
    *,
    name: str,
    mobile: str,
    department: str = "",
    role: str = "",
    language: str = "zh",
    extension: str = "",
) -> Contact:
    try:
        number = normalise_mobile(mobile)
    except InvalidNumber as exc:
        raise SmsError(str(exc)) from None
    extension = extension.strip()
    if extension and not EXTENSION.fullmatch(extension):
        raise SmsError(f"extension {extension!r}: 2 to 16 digits, as the exchange dials it")
    if await session.scalar(select(Contact.id).where(Contact.mobile == number)):
        raise SmsError(f"a contact with mobile {number} already exists")
    department_id = None
    if department:
        found = await department_by_code_or_name(session, department)
        if found is None:
            raise SmsError(f"no department {department!r}")
        department_id = found.id
    contact = Contact(
        name=name.strip(),
        mobile=number,
        department_id=department_id,
        role=role.strip(),
        language=language,
        active=True,
        extension=extension,
    )
    session.add(contact)
    await session.flush()
    return contact


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)


async def import_contacts(session: AsyncSession, data: bytes) -> ImportReport:
    """Import the good rows of a CSV (new mobiles added, known ones updated)."""
    parsed = parse_contacts(data)
    report = ImportReport(errors=list(parsed.errors))
    departments = {d.code: d.id for d in await session.scalars(select(Department))}
    departments.update({d.name: d.id for d in await session.scalars(select(Department))})
    existing = {
        c.mobile: c
        for c in await session.scalars(
            select(Contact).where(Contact.mobile.in_([row.mobile for row in parsed.rows]))
        )
    }
    groups = {g.name: g for g in await session.scalars(select(Group))}
    good: list[tuple[ContactRow, Contact]] = []
    for row in parsed.rows:
        department_id = None
        if row.department:
            department_id = departments.get(row.department)
            if department_id is None:
                report.errors.append(RowError(row.line, f"no department {row.department!r}"))
                continue
        unknown = [
            name
            for name in row.groups
            if name not in groups or groups[name].kind is not GroupKind.STATIC
        ]
        if unknown:
            report.errors.append(RowError(row.line, f"no static group {unknown[0]!r}"))
            continue
        contact = existing.get(row.mobile)
        if contact is None:
            contact = Contact(mobile=row.mobile, active=True)
            session.add(contact)
            report.created += 1
        else:
            report.updated += 1
        contact.name, contact.department_id = row.name, department_id
        contact.role, contact.language = row.role, row.language
        good.append((row, contact))
    await session.flush()
    for row, contact in good:
        for name in row.groups:
            await _add_member(session, groups[name].id, contact.id)
    report.errors.sort(key=lambda error: error.line)
    return report


async def _add_member(session: AsyncSession, group_id: int, contact_id: int) -> None:
    if await session.get(GroupMember, (group_id, contact_id)) is None:
        session.add(GroupMember(group_id=group_id, contact_id=contact_id))


async def add_group(
    session: AsyncSession,
    name: str,
    *,
    department: str = "",
    role: str = "",
    roster: str = "",
    members: Sequence[str] = (),
) -> Group:
    """A static group (members), a dynamic one (department and/or role) or a roster's."""
    if await session.scalar(select(Group.id).where(Group.name == name)):
        raise SmsError(f"group {name!r} already exists")
    department_id = None
    if department:
        found = await department_by_code_or_name(session, department)
        if found is None:
            raise SmsError(f"no department {department!r}")
        department_id = found.id
    if roster:
        kind = GroupKind.ROSTER
    elif department_id is not None or role:
        kind = GroupKind.DYNAMIC
    else:
        kind = GroupKind.STATIC
    group = Group(name=name, kind=kind, department_id=department_id, role=role, roster=roster)
    session.add(group)
    await session.flush()
    for mobile in members:
        contact = await contact_by_mobile(session, mobile)
        await _add_member(session, group.id, contact.id)
    return group


async def contact_by_mobile(session: AsyncSession, mobile: str) -> Contact:
    try:
        number = normalise_mobile(mobile)
    except InvalidNumber as exc:
        raise SmsError(str(exc)) from None
    contact = await session.scalar(select(Contact).where(Contact.mobile == number))
    if contact is None:
        raise NotFound(f"no contact with mobile {number}")
    return contact


async def add_shift(
    session: AsyncSession, roster: str, mobile: str, starts_at: dt.datetime, ends_at: dt.datetime
) -> DutyShift:
    if ends_at <= starts_at:
        raise SmsError("a shift must end after it starts")
    contact = await contact_by_mobile(session, mobile)
    shift = DutyShift(roster=roster, contact_id=contact.id, starts_at=starts_at, ends_at=ends_at)
    session.add(shift)
    await session.flush()
    return shift


async def on_duty(session: AsyncSession, roster: str, at: dt.datetime) -> list[Contact]:
    rows = await session.scalars(
        select(Contact)
        .join(DutyShift, DutyShift.contact_id == Contact.id)
        .where(
            DutyShift.roster == roster,
            DutyShift.starts_at <= at,
            DutyShift.ends_at > at,
            Contact.active.is_(True),
        )
        .order_by(Contact.id)
    )
    return list(rows.unique())


async def group_members(session: AsyncSession, group: Group, at: dt.datetime) -> list[Contact]:
    if group.kind is GroupKind.ROSTER:
        return await on_duty(session, group.roster, at)
    query = select(Contact).where(Contact.active.is_(True)).order_by(Contact.id)
    if group.kind is GroupKind.STATIC:
        query = query.join(GroupMember, GroupMember.contact_id == Contact.id).where(
            GroupMember.group_id == group.id
        )
    else:
        if group.department_id is not None:
            query = query.where(Contact.department_id == group.department_id)
        if group.role:
            query = query.where(Contact.role == group.role)
    return list(await session.scalars(query))


async def resolve_audience(
    session: AsyncSession,
    *,
    groups: Iterable[str] = (),
    departments: Iterable[str] = (),
    mobiles: Iterable[str] = (),
    at: dt.datetime | None = None,
) -> list[Contact]:
    """Everyone the broadcast reaches, each mobile once."""
    at = at or utcnow()
    found: dict[str, Contact] = {}
    for name in groups:
        group = await session.scalar(select(Group).where(Group.name == name))
        if group is None:
            raise NotFound(f"no group {name!r}")
        for contact in await group_members(session, group, at):
            found.setdefault(contact.mobile, contact)
    for code in departments:
        department = await department_by_code_or_name(session, code)
        if department is None:
            raise NotFound(f"no department {code!r}")
        for contact in await session.scalars(
            select(Contact)
            .where(Contact.department_id == department.id, Contact.active.is_(True))
            .order_by(Contact.id)
        ):
            found.setdefault(contact.mobile, contact)
    for mobile in mobiles:
        contact = await contact_by_mobile(session, mobile)
        found.setdefault(contact.mobile, contact)
    return list(found.values())


# ---------------------------------------------------------------- templates


async def save_template(session: AsyncSession, name: str, body: str) -> Template:
    template = await session.scalar(select(Template).where(Template.name == name))
    if template is None:
        template = Template(name=name, body=body)
        session.add(template)
    else:
        template.body = body
    await session.flush()
    return template


@dataclass(frozen=True)
class Preview:
    text: str
    encoding: str
    characters: int
    units: int
    segments: int
    per_part_limit: int
    recipients: int
    total_segments: int
    estimated_cost: float


def preview(text: str, recipients: int, price_per_segment: float) -> Preview:
    split = segments.segment(text)
    return Preview(
        text=text,
        encoding=split.encoding.value,
        characters=len(text),
        units=split.units,
        segments=split.segments,
        per_part_limit=split.per_part_limit,
        recipients=recipients,
        total_segments=split.segments * recipients,
        estimated_cost=segments.estimated_cost(split.segments, recipients, price_per_segment),
    )


# ---------------------------------------------------------------- broadcasts


async def create_broadcast(
    session: AsyncSession,
    *,
    body: str,
    created_by: str,
    contacts: Sequence[Contact],
    approval_threshold: int,
    send_at: dt.datetime | None = None,
    audience: str = "",
    incident_id: int | None = None,
    cap_xml: str | None = None,
    escalate_after_seconds: int | None = None,
    escalate_call: bool = False,
    escalate_group: str = "",
) -> Broadcast:
    """Create the broadcast and one queued row per recipient, in the caller's transaction.

    With ``escalate_after_seconds``, whoever has not acknowledged by then is called
    (``escalate_call``) and/or the alert goes to ``escalate_group`` (sms.escalation).
    """
    text = body.strip()
    if not text:
        raise SmsError("the message is empty")
    if len(text) > MAX_BODY:
        raise SmsError(f"the message is longer than {MAX_BODY} characters")
    if not contacts:
        raise SmsError("the audience has no contacts")
    now = utcnow()
    send_at = send_at or now
    if send_at.tzinfo is None:
        raise SmsError("send_at needs a time zone")
    await check_escalation(session, escalate_after_seconds, escalate_call, escalate_group)
    needs_approval = bool(approval_threshold) and len(contacts) > approval_threshold
    if needs_approval:
        status = BroadcastStatus.PENDING_APPROVAL
    elif send_at > now:
        status = BroadcastStatus.SCHEDULED
    else:
        status = BroadcastStatus.SENDING
    split = segments.segment(text)
    broadcast = Broadcast(
        body=text,
        status=status,
        created_by=created_by,
        send_at=send_at,
        created_at=now,
        encoding=split.encoding.value,
        segments=split.segments,
        recipient_count=len(contacts),
        audience=audience[:500],
        incident_id=incident_id,
        cap_xml=cap_xml,
        escalate_after_seconds=escalate_after_seconds,
        escalate_call=escalate_call,
        escalate_group=escalate_group,
    )
    if status is not BroadcastStatus.PENDING_APPROVAL:
        broadcast.escalate_at = escalation_due(broadcast, now)
    session.add(broadcast)
    await session.flush()
    rows = [
        {
            "broadcast_id": broadcast.id,
            "contact_id": c.id,
            "name": c.name,
            "mobile": c.mobile,
            "state": DeliveryState.QUEUED,
            "attempts": 0,
            "next_attempt_at": send_at,
            "claimed_by": "",
            "error": "",
            "updated_at": now,
        }
        for c in contacts
    ]
    for start in range(0, len(rows), 2000):
        await session.execute(insert(Recipient), rows[start : start + 2000])
    return broadcast


async def check_escalation(
    session: AsyncSession, after_seconds: int | None, call: bool, group: str
) -> None:
    if after_seconds is None:
        if call or group:
            raise SmsError("escalation needs a time: escalate after how many minutes")
        return
    if not 0 < after_seconds <= MAX_ESCALATION_SECONDS:
        raise SmsError("escalation comes after 1 second to 7 days")
    if not call and not group:
        raise SmsError("escalation needs an action: a call, a backup group, or both")
    if group and not await session.scalar(select(Group.id).where(Group.name == group)):
        raise NotFound(f"no group {group!r} for escalation")


def escalation_due(broadcast: Broadcast, now: dt.datetime) -> dt.datetime | None:
    """When the wave is due: N seconds after sending begins (not before its send time)."""
    if broadcast.escalate_after_seconds is None:
        return None
    start = max(aware(broadcast.send_at), now)
    return start + dt.timedelta(seconds=broadcast.escalate_after_seconds)


async def get_broadcast(session: AsyncSession, broadcast_id: int) -> Broadcast:
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None:
        raise NotFound(f"no broadcast {broadcast_id}")
    return broadcast


async def approve_broadcast(session: AsyncSession, broadcast_id: int, approver: str) -> Broadcast:
    broadcast = await get_broadcast(session, broadcast_id)
    if broadcast.status is not BroadcastStatus.PENDING_APPROVAL:
        raise SmsError(
            f"broadcast {broadcast_id} is {broadcast.status.value}, not awaiting approval"
        )
    if approver == broadcast.created_by:
        raise SmsError("a second duty officer must approve; you composed this broadcast")
    broadcast.approved_by = approver
    broadcast.escalate_at = escalation_due(broadcast, utcnow())
    broadcast.status = (
        BroadcastStatus.SCHEDULED
        if aware(broadcast.send_at) > utcnow()
        else BroadcastStatus.SENDING
    )
    return broadcast


async def cancel_broadcast(session: AsyncSession, broadcast_id: int) -> int:
    """Cancel what has not gone out; returns how many recipients were spared."""
    broadcast = await get_broadcast(session, broadcast_id)
    if broadcast.status in (BroadcastStatus.COMPLETED, BroadcastStatus.CANCELLED):
        raise SmsError(f"broadcast {broadcast_id} is already {broadcast.status.value}")
    broadcast.status = BroadcastStatus.CANCELLED
    broadcast.completed_at = utcnow()
    result = await session.execute(
        update(Recipient)
        .where(
            Recipient.broadcast_id == broadcast_id,
            Recipient.state.in_(sources_of(DeliveryState.CANCELLED)),
        )
        .values(state=DeliveryState.CANCELLED, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await cancel_calls(session, broadcast_id)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def state_counts(session: AsyncSession, broadcast_id: int) -> dict[str, int]:
    counts = {state.value: 0 for state in DeliveryState}
    for state, count in await session.execute(
        select(Recipient.state, func.count())
        .where(Recipient.broadcast_id == broadcast_id)
        .group_by(Recipient.state)
    ):
        counts[DeliveryState(state).value] = int(count)
    return counts


async def recipients_of(
    session: AsyncSession, broadcast_id: int, limit: int = 500, offset: int = 0
) -> list[tuple[Recipient, EscalationCall | None]]:
    """Recipients in order, each with its escalation call (None: not called)."""
    rows = await session.execute(
        select(Recipient, EscalationCall)
        .outerjoin(EscalationCall, EscalationCall.recipient_id == Recipient.id)
        .where(Recipient.broadcast_id == broadcast_id)
        .order_by(Recipient.id)
        .limit(limit)
        .offset(offset)
    )
    return [(recipient, call) for recipient, call in rows]


async def history(session: AsyncSession, limit: int = 50) -> list[Broadcast]:
    return list(await session.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit)))


# ---------------------------------------------------------------- replies


def is_acknowledgement(body: str) -> bool:
    return body.strip().strip("。.!！ ").lower() in ACK_WORDS


async def acknowledge(session: AsyncSession, recipient_id: int, via: str) -> bool:
    """Mark a recipient acknowledged: by ``via`` "sms" (a reply) or "call" (1 pressed in the
    escalation call, sms.escalation). False if it may not move (acknowledged already, or
    its text not sent yet)."""
    now = utcnow()
    result = await session.execute(
        update(Recipient)
        .where(
            Recipient.id == recipient_id,
            Recipient.state.in_(sources_of(DeliveryState.ACKNOWLEDGED)),
        )
        .values(
            state=DeliveryState.ACKNOWLEDGED,
            acknowledged_at=now,
            updated_at=now,
            acknowledged_via=via,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def record_reply(
    session: AsyncSession, *, provider_sid: str, from_mobile: str, body: str
) -> Recipient | None:
    """Store an inbound SMS; an acknowledging reply marks the newest open alert to that phone.

    Replays of the same provider message are recognised by its SID and change nothing.
    """
    if await session.scalar(
        select(InboundMessage.id).where(InboundMessage.provider_sid == provider_sid)
    ):
        return None
    try:
        mobile = normalise_mobile(from_mobile)
    except InvalidNumber:
        mobile = from_mobile[:32]
    recipient = None
    if is_acknowledgement(body):
        recipient = await session.scalar(
            select(Recipient)
            .where(
                Recipient.mobile == mobile,
                Recipient.state.in_(sources_of(DeliveryState.ACKNOWLEDGED)),
            )
            .order_by(Recipient.id.desc())
            .limit(1)
        )
        if recipient is not None:
            await acknowledge(session, recipient.id, "sms")
    session.add(
        InboundMessage(
            provider_sid=provider_sid,
            from_mobile=mobile,
            body=body[:2000],
            recipient_id=recipient.id if recipient else None,
        )
    )
    return recipient


# ---------------------------------------------------------------- duty log


async def add_log_entry(
    session: AsyncSession,
    *,
    kind: LogKind,
    title: str,
    author: str,
    happened: str = "",
    actions: str = "",
    outcome: str = "",
) -> DutyLogEntry:
    entry = DutyLogEntry(
        kind=kind,
        title=title,
        author=author,
        happened=happened,
        actions=actions,
        outcome=outcome,
        at=utcnow(),
    )
    session.add(entry)
    await session.flush()
    return entry


async def duty_log(session: AsyncSession, limit: int = 100) -> list[tuple[DutyLogEntry, list[int]]]:
    """Entries, newest first, each with the broadcasts sent for it."""
    entries = list(
        await session.scalars(
            select(DutyLogEntry)
            .order_by(DutyLogEntry.at.desc(), DutyLogEntry.id.desc())
            .limit(limit)
        )
    )
    links: dict[int, list[int]] = {}
    if entries:
        for broadcast_id, incident_id in await session.execute(
            select(Broadcast.id, Broadcast.incident_id).where(
                and_(Broadcast.incident_id.in_([e.id for e in entries]))
            )
        ):
            links.setdefault(incident_id, []).append(broadcast_id)
    return [(entry, sorted(links.get(entry.id, []))) for entry in entries]


# ---------------------------------------------------------------- listings and CAP export


async def list_contacts(session: AsyncSession, limit: int = 1000) -> list[Contact]:
    return list(await session.scalars(select(Contact).order_by(Contact.name).limit(limit)))


async def list_groups(session: AsyncSession) -> list[Group]:
    return list(await session.scalars(select(Group).order_by(Group.name)))


async def list_templates(session: AsyncSession) -> list[Template]:
    return list(await session.scalars(select(Template).order_by(Template.name)))


async def template_by_name(session: AsyncSession, name: str) -> Template:
    template = await session.scalar(select(Template).where(Template.name == name))
    if template is None:
        raise NotFound(f"no template {name!r}")
    return template


def broadcast_as_cap(broadcast: Broadcast, sender: str) -> bytes:
    """The broadcast as CAP 1.2: the imported document itself, or one built from it."""
    if broadcast.cap_xml:
        return broadcast.cap_xml.encode("utf-8")
    sent = (
        broadcast.created_at
        if broadcast.created_at.tzinfo
        else broadcast.created_at.replace(tzinfo=dt.UTC)
    )
    alert = cap.CapAlert(
        identifier=f"unicomm-sms-{broadcast.id}",
        sender=sender.replace(" ", "_"),
        sent=sent,
        info=[
            cap.CapInfo(
                event="SMS alert",
                urgency="Unknown",
                severity="Unknown",
                certainty="Unknown",
                category="Other",
                language="zh-CN",
                headline=broadcast.body[:160],
                description=broadcast.body,
            )
        ],
    )
    return cap.build(alert)


# ---------------------------------------------------------------- directory edits
#
# A contact's past deliveries stay readable after an edit or a deletion: each
# recipient row keeps the name and number it was sent to (a snapshot), and its
# contact_id becomes NULL when the contact is deleted (ON DELETE SET NULL).


async def get_contact(session: AsyncSession, contact_id: int) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    return contact


async def update_contact(
    session: AsyncSession,
    contact_id: int,
    *,
    name: str,
    mobile: str,
    department: str = "",
    role: str = "",
    language: str = "zh",
    active: bool = True,
    extension: str | None = None,
) -> dict[str, tuple[object, object]]:
    """Change a contact; returns what changed as ``{field: (before, after)}``.

    ``extension`` None leaves the escalation extension as it is.
    """
    contact = await get_contact(session, contact_id)
    try:
        number = normalise_mobile(mobile)
    except InvalidNumber as exc:
        raise SmsError(str(exc)) from None
    if not name.strip():
        raise SmsError("the name is empty")
    if language not in ("zh", "en"):
        raise SmsError(f"language must be zh or en, not {language!r}")
    if extension is not None:
        extension = extension.strip()
        if extension and not EXTENSION.fullmatch(extension):
            raise SmsError(f"extension {extension!r}: 2 to 16 digits, as the exchange dials it")
    if number != contact.mobile and await session.scalar(
        select(Contact.id).where(Contact.mobile == number, Contact.id != contact.id)
    ):
        raise SmsError(f"a contact with mobile {number} already exists")
    department_id = None
    if department:
        found = await department_by_code_or_name(session, department)
        if found is None:
            raise SmsError(f"no department {department!r}")
        department_id = found.id
    wanted = {
        "name": name.strip(),
        "mobile": number,
        "department_id": department_id,
        "role": role.strip(),
        "language": language,
        "active": active,
    }
    if extension is not None:
        wanted["extension"] = extension
    changes: dict[str, tuple[object, object]] = {}
    for key, value in wanted.items():
        if getattr(contact, key) != value:
            changes[key] = (getattr(contact, key), value)
            setattr(contact, key, value)
    await session.flush()
    return changes


@dataclass(frozen=True)
class DeletedContact:
    id: int
    name: str
    mobile: str
    groups: int  # static group memberships removed
    shifts: int  # roster shifts removed
    deliveries: int  # recipient rows kept (name and number stay on them)


async def delete_contact(session: AsyncSession, contact_id: int) -> DeletedContact:
    """Remove a contact, its group memberships and roster shifts; keep its deliveries."""
    contact = await get_contact(session, contact_id)
    groups = int(
        await session.scalar(
            select(func.count())
            .select_from(GroupMember)
            .where(GroupMember.contact_id == contact.id)
        )
        or 0
    )
    shifts = int(
        await session.scalar(
            select(func.count()).select_from(DutyShift).where(DutyShift.contact_id == contact.id)
        )
        or 0
    )
    # Explicit, not left to ON DELETE alone: the rows say the same whatever the backend.
    kept = await session.execute(
        update(Recipient)
        .where(Recipient.contact_id == contact.id)
        .values(contact_id=None)
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(GroupMember).where(GroupMember.contact_id == contact.id))
    await session.execute(delete(DutyShift).where(DutyShift.contact_id == contact.id))
    gone = DeletedContact(
        contact.id,
        contact.name,
        contact.mobile,
        groups,
        shifts,
        int(kept.rowcount or 0),  # type: ignore[attr-defined]
    )
    await session.delete(contact)
    await session.flush()
    return gone


async def get_group(session: AsyncSession, group_id: int) -> Group:
    group = await session.get(Group, group_id)
    if group is None:
        raise NotFound(f"no group {group_id}")
    return group


async def static_members(session: AsyncSession, group_id: int) -> list[Contact]:
    """The hand-picked members of a static group (active or not), by name."""
    return list(
        await session.scalars(
            select(Contact)
            .join(GroupMember, GroupMember.contact_id == Contact.id)
            .where(GroupMember.group_id == group_id)
            .order_by(Contact.name, Contact.id)
        )
    )


async def set_group_members(
    session: AsyncSession, group_id: int, mobiles: Sequence[str]
) -> tuple[Group, list[str], list[str]]:
    """Make a static group's members exactly ``mobiles``; returns (group, added, removed).

    Every number must be a known contact: one unknown number refuses the whole change.
    """
    group = await get_group(session, group_id)
    if group.kind is not GroupKind.STATIC:
        raise SmsError(
            f"group {group.name!r} is {group.kind.value}: its members follow its "
            "department, role or roster, not a list"
        )
    wanted: dict[int, str] = {}
    for mobile in mobiles:
        if mobile.strip():
            contact = await contact_by_mobile(session, mobile)
            wanted[contact.id] = contact.mobile
    current = {c.id: c.mobile for c in await static_members(session, group.id)}
    added = [wanted[i] for i in wanted if i not in current]
    removed = [current[i] for i in current if i not in wanted]
    gone = [i for i in current if i not in wanted]
    if gone:
        await session.execute(
            delete(GroupMember).where(
                GroupMember.group_id == group.id, GroupMember.contact_id.in_(gone)
            )
        )
    for contact_id in wanted:
        if contact_id not in current:
            session.add(GroupMember(group_id=group.id, contact_id=contact_id))
    await session.flush()
    return group, sorted(added), sorted(removed)


# ---------------------------------------------------------------- duty log edits


async def get_log_entry(session: AsyncSession, entry_id: int) -> DutyLogEntry:
    entry = await session.get(DutyLogEntry, entry_id)
    if entry is None:
        raise NotFound(f"no duty log entry {entry_id}")
    return entry


async def update_log_entry(
    session: AsyncSession,
    entry_id: int,
    *,
    title: str,
    happened: str = "",
    actions: str = "",
    outcome: str = "",
) -> DutyLogEntry:
    """Complete an entry as the incident unfolds (what was done, the outcome)."""
    entry = await get_log_entry(session, entry_id)
    if not title.strip():
        raise SmsError("the title is empty")
    entry.title, entry.happened = title.strip(), happened
    entry.actions, entry.outcome = actions, outcome
    await session.flush()
    return entry


async def link_broadcast(session: AsyncSession, entry_id: int, broadcast_id: int) -> Broadcast:
    """Record that a broadcast was sent for an incident (or a shift entry)."""
    entry = await get_log_entry(session, entry_id)
    broadcast = await get_broadcast(session, broadcast_id)
    if broadcast.incident_id not in (None, entry.id):
        raise SmsError(
            f"broadcast {broadcast_id} already belongs to duty log entry {broadcast.incident_id}"
        )
    broadcast.incident_id = entry.id
    await session.flush()
    return broadcast


# ---------------------------------------------------------------- CAP alerts


async def cap_broadcast(
    session: AsyncSession,
    *,
    xml: str,
    language: str,
    created_by: str,
    groups: Sequence[str] = (),
    departments: Sequence[str] = (),
    approval_threshold: int,
    audience: str = "",
    incident_id: int | None = None,
) -> tuple[cap.CapAlert, Broadcast]:
    """Validate a CAP 1.2 document and create its broadcast; nothing is written if invalid.

    Raises :class:`cap.CapError` (the document) or :class:`SmsError` (the audience).
    """
    alert = cap.parse(xml.encode("utf-8"))
    text = alert.text(language)
    if not text:
        raise cap.CapError("the alert has no <info> to text")
    contacts = await resolve_audience(session, groups=groups, departments=departments)
    broadcast = await create_broadcast(
        session,
        body=text,
        created_by=created_by,
        contacts=contacts,
        approval_threshold=approval_threshold,
        audience=audience,
        cap_xml=xml,
        incident_id=incident_id,
    )
    return alert, broadcast


def alert_event(alert: cap.CapAlert, broadcast_id: int, xml: str) -> AlertPublished:
    """What the bus hears of a sent CAP alert (kiosks, the command room)."""
    info = alert.info[0]
    return AlertPublished(
        identifier=alert.identifier,
        sender=alert.sender,
        headline=info.headline or info.event,
        description=info.description,
        instruction=info.instruction,
        severity=info.severity,
        urgency=info.urgency,
        area=info.area,
        language=info.language,
        broadcast_id=broadcast_id,
        cap_xml=xml,
    )


async def audit_contact_edit(
    session: AsyncSession,
    actor: str,
    source: str,
    contact: Contact,
    changes: dict[str, tuple[object, object]],
) -> None:
    await audit(
        session,
        actor,
        "sms.contact.edit",
        contact.mobile,
        source,
        contact=contact.id,
        changed={k: [str(a), str(b)] for k, (a, b) in changes.items()},
    )


async def audit_contact_delete(
    session: AsyncSession, actor: str, source: str, gone: DeletedContact
) -> None:
    await audit(
        session,
        actor,
        "sms.contact.delete",
        gone.mobile,
        source,
        contact=gone.id,
        name=gone.name,
        groups=gone.groups,
        shifts=gone.shifts,
        deliveries_kept=gone.deliveries,
    )


async def audit_group_members(
    session: AsyncSession,
    actor: str,
    source: str,
    group: Group,
    added: list[str],
    removed: list[str],
) -> None:
    await audit(
        session, actor, "sms.group.members", group.name, source, added=added, removed=removed
    )
