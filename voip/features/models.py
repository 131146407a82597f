"""Tables of the PBX features: call settings, voicemail, call recordings, ring groups, IVR."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class CallFeatureRow(Base):
    """How an extension takes calls: DND, forwarding, voicemail (absent row: defaults)."""

    __tablename__ = "voip_call_features"

    extension_id: Mapped[int] = mapped_column(
        ForeignKey("voip_extensions.id", ondelete="CASCADE"), primary_key=True
    )
    dnd: Mapped[bool] = mapped_column(Boolean, default=False)
    forward_always: Mapped[str] = mapped_column(String(32), default="")
    forward_busy: Mapped[str] = mapped_column(String(32), default="")
    forward_no_answer: Mapped[str] = mapped_column(String(32), default="")
    no_answer_seconds: Mapped[int] = mapped_column(Integer, default=20)
    voicemail: Mapped[bool] = mapped_column(Boolean, default=True)
    voicemail_pin_hash: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(2), default="zh")
    pickup_group: Mapped[str] = mapped_column(String(32), default="")
    record_calls: Mapped[bool] = mapped_column(Boolean, default=False)


class CallRecordingRow(Base):
    """A recorded call, listed under the extension whose setting recorded it.

    When both parties record, the two rows share one file (``path``), removed with
    them by the retention sweep.
    """

    __tablename__ = "voip_call_recordings"
    __table_args__ = (Index("ix_voip_call_recordings_owner_started", "extension", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    extension: Mapped[str] = mapped_column(String(16))
    peer: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8), doc="outgoing or incoming")
    call_id: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    path: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)


class VoicemailRow(Base):
    """One message left in a mailbox; the WAV lives under ``data_dir/voicemail``."""

    __tablename__ = "voip_voicemails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(16), index=True)
    caller: Mapped[str] = mapped_column(String(64))
    caller_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    path: Mapped[str] = mapped_column(String(500))
    heard: Mapped[bool] = mapped_column(Boolean, default=False)


class RingGroupRow(Base):
    """A number that rings several extensions, all at once or one after another."""

    __tablename__ = "voip_ring_groups"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    strategy: Mapped[str] = mapped_column(String(12), default="simultaneous")
    members: Mapped[str] = mapped_column(String(500), doc="extension numbers, comma separated")
    ring_seconds: Mapped[int] = mapped_column(Integer, default=15)


class IvrMenuRow(Base):
    """An auto-attendant menu: a spoken greeting and digit -> number options."""

    __tablename__ = "voip_ivr_menus"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    greeting: Mapped[str] = mapped_column(String(1000))
    options: Mapped[str] = mapped_column(String(500), doc="digit=number pairs, comma separated")
    language: Mapped[str] = mapped_column(String(2), default="zh")
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=5)
    retries: Mapped[int] = mapped_column(Integer, default=2)
