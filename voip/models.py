"""Telephony tables: extensions, registrations, call-detail records."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, DateTime, Enum, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class ClassOfService(enum.StrEnum):
    """How far an extension may call; enforced on every outbound call."""

    INTERNAL = "internal"
    LOCAL = "local"
    NATIONAL = "national"
    INTERNATIONAL = "international"


class Extension(Base):
    """A phone number of the exchange; only digest HA1 values are stored, never the password."""

    __tablename__ = "voip_extensions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), index=True
    )
    realm: Mapped[str] = mapped_column(String(100))
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    class_of_service: Mapped[ClassOfService] = mapped_column(
        Enum(
            ClassOfService,
            name="class_of_service",
            native_enum=False,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=ClassOfService.INTERNAL,
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Binding(Base):
    """A registered contact of an extension (RFC 3261 §10): survives a restart."""

    __tablename__ = "voip_bindings"
    __table_args__ = (UniqueConstraint("extension_id", "contact_uri"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    extension_id: Mapped[int] = mapped_column(
        ForeignKey("voip_extensions.id", ondelete="CASCADE"), index=True
    )
    contact_uri: Mapped[str] = mapped_column(String(500))
    call_id: Mapped[str] = mapped_column(String(200))
    cseq: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    transport: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(100), doc="ip:port the REGISTER came from")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    node: Mapped[str] = mapped_column(String(100), doc="node holding the connection")
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Disposition(enum.StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


class CallRecord(Base):
    """One call-detail record per call, written once when the call ends."""

    __tablename__ = "voip_cdr"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(200), index=True)
    caller: Mapped[str] = mapped_column(String(64))
    callee: Mapped[str] = mapped_column(String(64))
    caller_department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL")
    )
    callee_department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL")
    )
    direction: Mapped[str] = mapped_column(String(10), default="internal")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    disposition: Mapped[Disposition] = mapped_column(
        Enum(
            Disposition,
            name="disposition",
            native_enum=False,
            values_callable=lambda e: [m.value for m in e],
        ),
    )
    hangup_side: Mapped[str] = mapped_column(String(10), default="")
    sip_status: Mapped[int | None] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(100), default="")


class DialRule(Base):
    """One row of the dial plan (see :mod:`voip.dialplan` for the kinds)."""

    __tablename__ = "voip_dial_rules"
    __table_args__ = (UniqueConstraint("kind", "pattern"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    pattern: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(200), default="")


class DepartmentPolicy(Base):
    """What a department's extensions may dial, and the number the carrier shows for them."""

    __tablename__ = "voip_department_policies"

    department_id: Mapped[int] = mapped_column(
        ForeignKey("departments.id", ondelete="CASCADE"), primary_key=True
    )
    class_of_service: Mapped[ClassOfService | None] = mapped_column(
        Enum(
            ClassOfService,
            name="class_of_service",
            native_enum=False,
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=True,
        doc="a cap on its extensions' own classes; empty: no cap",
    )
    caller_id: Mapped[str] = mapped_column(String(32), default="", doc="outbound caller ID")


class TariffRow(Base):
    """The carrier's retail tariff for one destination class (see :mod:`voip.rating`)."""

    __tablename__ = "voip_tariffs"

    destination: Mapped[str] = mapped_column(String(16), primary_key=True)
    retail_per_minute: Mapped[int] = mapped_column(Integer, doc="fen (0.01 CNY) per minute")
    increment_seconds: Mapped[int] = mapped_column(Integer, default=60)
