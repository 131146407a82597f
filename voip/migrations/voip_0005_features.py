"""voip: PBX features: per-extension call settings, voicemail messages, ring groups

Revision ID: voip_0005
Revises: voip_0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "voip_0005"
down_revision: str | Sequence[str] | None = "voip_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voip_call_features",
        sa.Column(
            "extension_id",
            sa.Integer(),
            sa.ForeignKey("voip_extensions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("dnd", sa.Boolean(), nullable=False),
        sa.Column("forward_always", sa.String(32), nullable=False),
        sa.Column("forward_busy", sa.String(32), nullable=False),
        sa.Column("forward_no_answer", sa.String(32), nullable=False),
        sa.Column("no_answer_seconds", sa.Integer(), nullable=False),
        sa.Column("voicemail", sa.Boolean(), nullable=False),
        sa.Column("voicemail_pin_hash", sa.String(200), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
    )
    op.create_table(
        "voip_voicemails",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mailbox", sa.String(16), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("caller_name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("heard", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_voip_voicemails_mailbox", "voip_voicemails", ["mailbox"])
    op.create_table(
        "voip_ring_groups",
        sa.Column("number", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("strategy", sa.String(12), nullable=False),
        sa.Column("members", sa.String(500), nullable=False),
        sa.Column("ring_seconds", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("voip_ring_groups")
    op.drop_table("voip_voicemails")
    op.drop_table("voip_call_features")
