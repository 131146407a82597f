"""conference: rooms and attendance

Revision ID: conference_0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "conference_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("conference",)
depends_on: str | Sequence[str] | None = "core_0001"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conference_rooms",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pin_hash", sa.String(64), nullable=True),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("main_venue", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("name", name="uq_conference_rooms_name"),
    )
    op.create_table(
        "conference_attendance",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "room_id",
            sa.Integer(),
            sa.ForeignKey("conference_rooms.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("venue", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("joined_at", TS, nullable=False),
        sa.Column("left_at", TS, nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
    )
    op.create_index("ix_conference_attendance_room_id", "conference_attendance", ["room_id"])


def downgrade() -> None:
    op.drop_table("conference_attendance")
    op.drop_table("conference_rooms")
