"""News on demand tables: stations, capture windows, transcode jobs, the catalogue.

An item row exists only for a finished, playable programme: work in progress
lives in a job (and its work folder), so the catalogue never shows half an item.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class Level(enum.StrEnum):
    CENTRAL = "central"
    PROVINCIAL = "provincial"
    CITY = "city"


class Kind(enum.StrEnum):
    TV = "tv"
    RADIO = "radio"


class CaptureState(enum.StrEnum):
    SCHEDULED = "scheduled"
    RECORDING = "recording"
    DONE = "done"
    FAILED = "failed"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def _enum(kind: type[enum.StrEnum], name: str) -> Enum:
    return Enum(
        kind,
        name=name,
        native_enum=False,
        length=16,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Station(Base):
    __tablename__ = "vod_stations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[Level] = mapped_column(_enum(Level, "vod_level"))
    kind: Mapped[Kind] = mapped_column(_enum(Kind, "vod_kind"))
    stream_url: Mapped[str] = mapped_column(String(1000), default="")
    # None: the server-wide vod_retention_days.
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Schedule(Base):
    """A recurring capture window, e.g. 19:00-19:30 every day, in the city's ``timezone``."""

    __tablename__ = "vod_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("vod_stations.id", ondelete="CASCADE"))
    programme: Mapped[str] = mapped_column(String(200))
    start_time: Mapped[str] = mapped_column(String(5))  # "HH:MM"
    duration_seconds: Mapped[int] = mapped_column(Integer)
    # ISO weekdays it runs on, "1234567" = every day.
    weekdays: Mapped[str] = mapped_column(String(7), default="1234567")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Capture(Base):
    """One concrete recording window (from a schedule, or booked once)."""

    __tablename__ = "vod_captures"
    # Several nodes materialise the same window; the constraint keeps one.
    __table_args__ = (UniqueConstraint("station_id", "starts_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("vod_stations.id", ondelete="CASCADE"))
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("vod_schedules.id", ondelete="SET NULL"), nullable=True
    )
    title: Mapped[str] = mapped_column(String(300))
    programme: Mapped[str] = mapped_column(String(200), default="")
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    ends_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[CaptureState] = mapped_column(
        _enum(CaptureState, "vod_capture_state"), default=CaptureState.SCHEDULED
    )
    node: Mapped[str] = mapped_column(String(100), default="")
    parts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Job(Base):
    """A transcode waiting, running or finished; durable so a restart loses nothing."""

    __tablename__ = "vod_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[JobState] = mapped_column(
        _enum(JobState, "vod_job_state"), default=JobState.QUEUED, index=True
    )
    origin: Mapped[str] = mapped_column(String(16))  # upload, capture, watch, cli
    source_path: Mapped[str] = mapped_column(String(1000))
    source_name: Mapped[str] = mapped_column(String(300), default="")
    station_id: Mapped[int] = mapped_column(ForeignKey("vod_stations.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    programme: Mapped[str] = mapped_column(String(200), default="")
    broadcast_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str] = mapped_column(String(100), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    item_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Item(Base):
    """A catalogued, playable programme; its files live in ``vod/items/<key>/``."""

    __tablename__ = "vod_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    station_id: Mapped[int] = mapped_column(
        ForeignKey("vod_stations.id", ondelete="RESTRICT"), index=True
    )
    title: Mapped[str] = mapped_column(String(300))
    programme: Mapped[str] = mapped_column(String(200), default="")
    level: Mapped[Level] = mapped_column(_enum(Level, "vod_level"))
    kind: Mapped[Kind] = mapped_column(_enum(Kind, "vod_kind"))
    broadcast_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    duration_seconds: Mapped[float] = mapped_column(Float)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    renditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    has_poster: Mapped[bool] = mapped_column(Boolean, default=False)
    thumbnails: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    views: Mapped[int] = mapped_column(Integer, default=0)
    # Lower-cased title, programme, station, description and tags: what search reads.
    search_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
