"""SMS alerts tables: directory, templates, broadcasts, one row per recipient, duty log."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow
from sms.states import DeliveryState


def _enum(kind: type[enum.StrEnum], name: str, length: int) -> Enum:
    return Enum(
        kind,
        name=name,
        native_enum=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
    )


class GroupKind(enum.StrEnum):
    STATIC = "static"  # hand-picked members
    DYNAMIC = "dynamic"  # everyone of a department and/or role, resolved when sending
    ROSTER = "roster"  # whoever a duty roster has on shift when sending


class BroadcastStatus(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class CallState(enum.StrEnum):
    """An escalation call of one recipient (sms.escalation): open states, then one outcome."""

    PENDING = "pending"  # to be called
    CLAIMED = "claimed"  # a node took it; nothing rang yet (a crash here: tried again)
    DIALLING = "dialling"  # the number was about to ring (a crash here: never called again)
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    SKIPPED = "skipped"  # acknowledged (or cancelled) before the call
    INTERRUPTED = "interrupted"  # the server stopped during the call: not called again


class LogKind(enum.StrEnum):
    SHIFT = "shift"
    INCIDENT = "incident"


class Contact(Base):
    __tablename__ = "sms_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mobile: Mapped[str] = mapped_column(String(16), unique=True)  # E.164
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), index=True
    )
    role: Mapped[str] = mapped_column(String(64), default="", index=True)
    language: Mapped[str] = mapped_column(String(8), default="zh")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The number the exchange rings on escalation (a desk extension); empty: the mobile.
    extension: Mapped[str] = mapped_column(String(32), default="", server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Group(Base):
    __tablename__ = "sms_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[GroupKind] = mapped_column(_enum(GroupKind, "sms_group_kind", 16))
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(64), default="")
    roster: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GroupMember(Base):
    __tablename__ = "sms_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("sms_groups.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("sms_contacts.id", ondelete="CASCADE"), primary_key=True
    )


class DutyShift(Base):
    """Who is on duty when: a roster is a named sequence of shifts."""

    __tablename__ = "sms_duty_shifts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    roster: Mapped[str] = mapped_column(String(100), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("sms_contacts.id", ondelete="CASCADE"))
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Template(Base):
    __tablename__ = "sms_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DutyLogEntry(Base):
    """A shift entry or an incident: what happened, what was done, the outcome."""

    __tablename__ = "sms_duty_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[LogKind] = mapped_column(_enum(LogKind, "sms_log_kind", 16))
    title: Mapped[str] = mapped_column(String(200))
    happened: Mapped[str] = mapped_column(Text, default="")
    actions: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Broadcast(Base):
    __tablename__ = "sms_broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[BroadcastStatus] = mapped_column(
        _enum(BroadcastStatus, "sms_broadcast_status", 20), index=True
    )
    created_by: Mapped[str] = mapped_column(String(100))
    approved_by: Mapped[str | None] = mapped_column(String(100))
    send_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    encoding: Mapped[str] = mapped_column(String(8))
    segments: Mapped[int] = mapped_column(Integer)
    recipient_count: Mapped[int] = mapped_column(Integer, default=0)
    audience: Mapped[str] = mapped_column(String(500), default="")
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("sms_duty_log.id", ondelete="SET NULL"), index=True
    )
    cap_xml: Mapped[str | None] = mapped_column(Text)
    # Escalation (sms.escalation): after this many seconds the unacknowledged are called
    # and/or the backup group is texted, once; escalate_at is set when sending begins.
    escalate_after_seconds: Mapped[int | None] = mapped_column(Integer)
    escalate_call: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    escalate_group: Mapped[str] = mapped_column(String(100), default="", server_default="")
    escalate_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    escalation_note: Mapped[str] = mapped_column(String(200), default="", server_default="")


class Recipient(Base):
    """One person of one broadcast: the durable truth of what was sent to them."""

    __tablename__ = "sms_recipients"
    # One row per (broadcast, number): a person is never texted twice by one broadcast.
    __table_args__ = (
        UniqueConstraint("broadcast_id", "mobile"),
        Index("ix_sms_recipients_work", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(
        ForeignKey("sms_broadcasts.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("sms_contacts.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(200))
    mobile: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState, "sms_delivery_state", 16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    attempt_started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str] = mapped_column(String(64), default="")
    provider_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    error: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # How: "sms" (a reply) or "call" (a key pressed in the escalation call); "" if not.
    acknowledged_via: Mapped[str] = mapped_column(String(8), default="", server_default="")
    # 0: the broadcast's audience; 1: added by escalation (the backup group).
    wave: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class EscalationCall(Base):
    """The escalation call of one recipient: at most one per recipient, ever."""

    __tablename__ = "sms_escalation_calls"
    __table_args__ = (Index("ix_sms_escalation_calls_work", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(
        ForeignKey("sms_broadcasts.id", ondelete="CASCADE"), index=True
    )
    recipient_id: Mapped[int] = mapped_column(
        ForeignKey("sms_recipients.id", ondelete="CASCADE"), unique=True
    )
    number: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    state: Mapped[CallState] = mapped_column(_enum(CallState, "sms_call_state", 16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims, dialled or not
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Times the number was dialled (each may have rung): counted as each call starts.
    dial_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    digits: Mapped[str] = mapped_column(String(32), default="", server_default="")  # keys pressed
    dialled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sip_status: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(String(200), default="")
    call_id: Mapped[str | None] = mapped_column(String(200))
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class InboundMessage(Base):
    """What came back from a recipient: an SMS reply, or a key pressed in an escalation call."""

    __tablename__ = "sms_inbound"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The provider's message SID; for a key press "call-<call id>-<attempt>".
    provider_sid: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(8), default="sms", server_default="sms")
    from_mobile: Mapped[str] = mapped_column(String(32), index=True)
    body: Mapped[str] = mapped_column(Text)
    recipient_id: Mapped[int | None] = mapped_column(
        ForeignKey("sms_recipients.id", ondelete="SET NULL")
    )
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
