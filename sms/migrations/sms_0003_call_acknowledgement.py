"""sms: acknowledgement by key press during an escalation call, and calls again when unanswered

A recipient's ``acknowledged_via`` (sms or call); an inbound acknowledgement's
``channel`` (an SMS reply, or a key pressed in an escalation call); an escalation
call's ``dial_count`` (times the number was dialled) and ``digits`` (keys pressed).

Revision ID: sms_0003
Revises: sms_0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sms_0003"
down_revision: str | Sequence[str] | None = "sms_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "sms_recipients",
        sa.Column("acknowledged_via", sa.String(8), nullable=False, server_default=""),
    )
    op.add_column(
        "sms_inbound", sa.Column("channel", sa.String(8), nullable=False, server_default="sms")
    )
    op.add_column(
        "sms_escalation_calls",
        sa.Column("dial_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "sms_escalation_calls",
        sa.Column("digits", sa.String(32), nullable=False, server_default=""),
    )


def downgrade() -> None:
    with op.batch_alter_table("sms_escalation_calls") as batch:
        batch.drop_column("digits")
        batch.drop_column("dial_count")
    with op.batch_alter_table("sms_inbound") as batch:
        batch.drop_column("channel")
    with op.batch_alter_table("sms_recipients") as batch:
        batch.drop_column("acknowledged_via")
