"""Video conference tables: rooms (the source of truth) and the attendance log."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, DateTime, Enum, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class RoomKind(enum.StrEnum):
    COMMAND = "command"  # the emergency command room: always open, never locked or removed
    MEETING = "meeting"  # a regular meeting room, kept until removed
    ADHOC = "adhoc"  # dropped when its last participant leaves


class Room(Base):
    __tablename__ = "conference_rooms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[RoomKind] = mapped_column(
        Enum(RoomKind, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    # The PIN is short, so only a salted SHA-256 is stored (``service.pin_digest``).
    pin_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    main_venue: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Attendance(Base):
    """One stay of a venue in a room: survives a crash, answers "who was there"."""

    __tablename__ = "conference_attendance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("conference_rooms.id", ondelete="CASCADE"))
    venue: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    node: Mapped[str] = mapped_column(String(100), default="")
    joined_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    left_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reason: Mapped[str] = mapped_column(String(32), default="")
