"""sms: escalation (calls through voip.place_call, a backup group), a contact's extension

Revision ID: sms_0002
Revises: sms_0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sms_0002"
down_revision: str | Sequence[str] | None = "sms_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column(
        "sms_contacts", sa.Column("extension", sa.String(32), nullable=False, server_default="")
    )
    op.add_column("sms_broadcasts", sa.Column("escalate_after_seconds", sa.Integer()))
    op.add_column(
        "sms_broadcasts",
        sa.Column("escalate_call", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "sms_broadcasts",
        sa.Column("escalate_group", sa.String(100), nullable=False, server_default=""),
    )
    op.add_column("sms_broadcasts", _ts("escalate_at", nullable=True))
    op.add_column("sms_broadcasts", _ts("escalated_at", nullable=True))
    op.add_column(
        "sms_broadcasts",
        sa.Column("escalation_note", sa.String(200), nullable=False, server_default=""),
    )
    op.create_index("ix_sms_broadcasts_escalate_at", "sms_broadcasts", ["escalate_at"])
    op.add_column(
        "sms_recipients", sa.Column("wave", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_table(
        "sms_escalation_calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "broadcast_id",
            sa.Integer(),
            sa.ForeignKey("sms_broadcasts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "recipient_id",
            sa.Integer(),
            sa.ForeignKey("sms_recipients.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        sa.Column("claimed_by", sa.String(64), nullable=False),
        _ts("lease_until", nullable=True),
        _ts("dialled_at", nullable=True),
        _ts("ended_at", nullable=True),
        sa.Column("sip_status", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(200), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=True),
        sa.Column("talk_seconds", sa.Float(), nullable=True),
        _ts("created_at"),
        # One call per recipient, ever: a wave run twice could not ring anyone twice.
        sa.UniqueConstraint("recipient_id", name="uq_sms_escalation_calls_recipient_id"),
    )
    op.create_index(
        "ix_sms_escalation_calls_broadcast_id", "sms_escalation_calls", ["broadcast_id"]
    )
    op.create_index(
        "ix_sms_escalation_calls_work", "sms_escalation_calls", ["state", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("sms_escalation_calls")
    with op.batch_alter_table("sms_recipients") as batch:
        batch.drop_column("wave")
    op.drop_index("ix_sms_broadcasts_escalate_at", "sms_broadcasts")
    with op.batch_alter_table("sms_broadcasts") as batch:
        for column in (
            "escalation_note",
            "escalated_at",
            "escalate_at",
            "escalate_group",
            "escalate_call",
            "escalate_after_seconds",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("sms_contacts") as batch:
        batch.drop_column("extension")
