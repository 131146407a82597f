"""vod: stations, capture windows, transcode jobs, catalogue and its search index

Revision ID: vod_0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "vod_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("vod",)
depends_on: str | Sequence[str] | None = "core_0001"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vod_stations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("stream_url", sa.String(1000), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("code", name="uq_vod_stations_code"),
    )
    op.create_table(
        "vod_schedules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "station_id",
            sa.Integer(),
            sa.ForeignKey("vod_stations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("programme", sa.String(200), nullable=False),
        sa.Column("start_time", sa.String(5), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("weekdays", sa.String(7), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "vod_captures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "station_id",
            sa.Integer(),
            sa.ForeignKey("vod_stations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "schedule_id",
            sa.Integer(),
            sa.ForeignKey("vod_schedules.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("programme", sa.String(200), nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("station_id", "starts_at", name="uq_vod_captures_station_id"),
    )
    op.create_index("ix_vod_captures_starts_at", "vod_captures", ["starts_at"])
    op.create_table(
        "vod_jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("source_path", sa.String(1000), nullable=False),
        sa.Column("source_name", sa.String(300), nullable=False),
        sa.Column(
            "station_id",
            sa.Integer(),
            sa.ForeignKey("vod_stations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("programme", sa.String(200), nullable=False),
        sa.Column("broadcast_at", TS, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index("ix_vod_jobs_state", "vod_jobs", ["state"])
    op.create_table(
        "vod_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column(
            "station_id",
            sa.Integer(),
            sa.ForeignKey("vod_stations.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("programme", sa.String(200), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("broadcast_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("renditions", sa.JSON(), nullable=False),
        sa.Column("has_poster", sa.Boolean(), nullable=False),
        sa.Column("thumbnails", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("views", sa.Integer(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("key", name="uq_vod_items_key"),
    )
    op.create_index("ix_vod_items_station_id", "vod_items", ["station_id"])
    op.create_index("ix_vod_items_broadcast_at", "vod_items", ["broadcast_at"])
    op.create_index("ix_vod_items_expires_at", "vod_items", ["expires_at"])

    # Full-text search that works for Chinese (no word spaces): trigram indexes on
    # both backends. SQLite: an FTS5 table kept in step by vod.catalog, rowid = item id.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE vod_items_fts USING fts5("
            "title, programme, station, description, tags, tokenize='trigram')"
        )
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_vod_items_search_trgm ON vod_items "
            "USING gin (search_text gin_trgm_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS vod_items_fts")
    op.drop_table("vod_items")
    op.drop_table("vod_jobs")
    op.drop_table("vod_captures")
    op.drop_table("vod_schedules")
    op.drop_table("vod_stations")
