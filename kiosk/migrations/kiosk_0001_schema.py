"""kiosk: groups, media, content items, playlists, devices, pairings, alerts, plays

Revision ID: kiosk_0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "kiosk_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("kiosk",)
depends_on: str | Sequence[str] | None = "core_0001"


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "kiosk_groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("district", sa.String(100), nullable=False),
        sa.Column("street", sa.String(100), nullable=False),
        sa.UniqueConstraint("code", name="uq_kiosk_groups_code"),
    )
    op.create_table(
        "kiosk_media",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(100), nullable=False),
        sa.Column("original_name", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(50), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("sha256", name="uq_kiosk_media_sha256"),
    )
    op.create_table(
        "kiosk_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("title_zh", sa.String(200), nullable=False),
        sa.Column("title_en", sa.String(200), nullable=False),
        sa.Column("body_zh", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        _ts("valid_from", nullable=True),
        _ts("valid_until", nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "kiosk_playlists",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("item_ids", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        _ts("updated_at"),
        sa.UniqueConstraint("name", name="uq_kiosk_playlists_name"),
    )
    op.create_table(
        "kiosk_devices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey(
                "kiosk_groups.id",
                name="fk_kiosk_devices_group_id_kiosk_groups",
                ondelete="SET NULL",
            ),
            nullable=True,
        ),
        sa.Column(
            "token_id",
            sa.Integer(),
            sa.ForeignKey(
                "device_tokens.id",
                name="fk_kiosk_devices_token_id_device_tokens",
                ondelete="SET NULL",
            ),
            nullable=True,
        ),
        _ts("created_at"),
        _ts("last_seen_at", nullable=True),
        _ts("last_rendered_at", nullable=True),
        sa.Column("app_version", sa.String(40), nullable=False),
        sa.Column("content_version", sa.String(64), nullable=False),
        sa.Column("uptime_seconds", sa.Integer(), nullable=False),
        sa.Column("cache_state", sa.JSON(), nullable=False),
        sa.Column("screenshot", sa.Text(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.UniqueConstraint("name", name="uq_kiosk_devices_name"),
    )
    op.create_index("ix_kiosk_devices_group_id", "kiosk_devices", ["group_id"])
    op.create_table(
        "kiosk_pairings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("claim_hash", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        sa.Column(
            "kiosk_id",
            sa.Integer(),
            sa.ForeignKey(
                "kiosk_devices.id",
                name="fk_kiosk_pairings_kiosk_id_kiosk_devices",
                ondelete="CASCADE",
            ),
            nullable=True,
        ),
        _ts("claimed_at", nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.UniqueConstraint("code", name="uq_kiosk_pairings_code"),
        sa.UniqueConstraint("claim_hash", name="uq_kiosk_pairings_claim_hash"),
    )
    op.create_table(
        "kiosk_alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("identifier", sa.String(200), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("headline", sa.String(500), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        _ts("created_at"),
        _ts("expires_at", nullable=True),
        _ts("cancelled_at", nullable=True),
        sa.UniqueConstraint("identifier", name="uq_kiosk_alerts_identifier"),
    )
    op.create_table(
        "kiosk_plays",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "kiosk_id",
            sa.Integer(),
            sa.ForeignKey(
                "kiosk_devices.id",
                name="fk_kiosk_plays_kiosk_id_kiosk_devices",
                ondelete="CASCADE",
            ),
            nullable=False,
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.UniqueConstraint("kiosk_id", "day", "item_id", "action", name="uq_kiosk_plays_kiosk_id"),
    )


def downgrade() -> None:
    for table in (
        "kiosk_plays",
        "kiosk_alerts",
        "kiosk_pairings",
        "kiosk_devices",
        "kiosk_playlists",
        "kiosk_items",
        "kiosk_media",
        "kiosk_groups",
    ):
        op.drop_table(table)
