"""voip: pickup groups, call recording setting and the recordings' list

Revision ID: voip_0008_pickup_recording
Revises: voip_0007_trunk_dids
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "voip_0008_pickup_recording"
down_revision: str | Sequence[str] | None = "voip_0007_trunk_dids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("voip_call_features") as batch:
        batch.add_column(
            sa.Column("pickup_group", sa.String(32), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("record_calls", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "voip_call_recordings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("extension", sa.String(16), nullable=False),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
    )
    op.create_index(
        "ix_voip_call_recordings_owner_started",
        "voip_call_recordings",
        ["extension", "started_at"],
    )
    op.create_index("ix_voip_call_recordings_started_at", "voip_call_recordings", ["started_at"])


def downgrade() -> None:
    op.drop_table("voip_call_recordings")
    with op.batch_alter_table("voip_call_features") as batch:
        batch.drop_column("record_calls")
        batch.drop_column("pickup_group")
