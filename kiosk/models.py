"""Kiosk tables: content, media, playlists, groups, devices, pairings, alerts, proof of play."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class KioskGroup(Base):
    """Kiosks that get the same content: usually one street of one district."""

    __tablename__ = "kiosk_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    district: Mapped[str] = mapped_column(String(100), default="")
    street: Mapped[str] = mapped_column(String(100), default="")


class KioskMedia(Base):
    """An uploaded image or clip, stored under ``data_dir/kiosk/media/<sha256>.<ext>``."""

    __tablename__ = "kiosk_media"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    file_name: Mapped[str] = mapped_column(String(100))
    original_name: Mapped[str] = mapped_column(String(200), default="")
    content_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ContentItem(Base):
    """One thing a kiosk shows, in zh and en; ``details`` holds what its kind needs
    (steps and documents of a guide, a media id, a VOD key, a portal URL and its cache)."""

    __tablename__ = "kiosk_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200), default="")
    body_zh: Mapped[str] = mapped_column(Text, default="")
    body_en: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    valid_from: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Playlist(Base):
    """Items in order, the schedule rules when they play and the kiosks they reach."""

    __tablename__ = "kiosk_playlists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    item_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    target: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Kiosk(Base):
    """A paired kiosk and what its last heartbeat said."""

    __tablename__ = "kiosk_devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("kiosk_groups.id", ondelete="SET NULL"), index=True
    )
    token_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_tokens.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_rendered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    app_version: Mapped[str] = mapped_column(String(40), default="")
    content_version: Mapped[str] = mapped_column(String(64), default="")
    uptime_seconds: Mapped[int] = mapped_column(Integer, default=0)
    cache_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    screenshot: Mapped[str] = mapped_column(Text, default="")  # a small data: URL
    screenshot_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(String(64), default="")


class Pairing(Base):
    """A code a new kiosk shows until an operator approves it.

    The kiosk keeps a secret ``claim`` (only its SHA-256 is stored) with which it
    collects its device token once, after approval; the token itself is never stored.
    """

    __tablename__ = "kiosk_pairings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    claim_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    kiosk_id: Mapped[int | None] = mapped_column(ForeignKey("kiosk_devices.id", ondelete="CASCADE"))
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(String(64), default="")


class Alert(Base):
    """An emergency takeover: from a CAP alert of sms/, the console or the CLI."""

    __tablename__ = "kiosk_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # CAP identifier (unique, so every node may record the same bus event once).
    identifier: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    headline: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(20), default="Unknown")
    target: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class PlayRecord(Base):
    """Proof of play and use: per kiosk, per day, per item, how often shown or opened."""

    __tablename__ = "kiosk_plays"
    __table_args__ = (UniqueConstraint("kiosk_id", "day", "item_id", "action"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kiosk_id: Mapped[int] = mapped_column(ForeignKey("kiosk_devices.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    item_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(10))  # "shown" or "opened"
    count: Mapped[int] = mapped_column(Integer, default=0)
