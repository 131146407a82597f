"""voip: registration bindings and call-detail records

Revision ID: voip_0002
Revises: voip_0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "voip_0002"
down_revision: str | Sequence[str] | None = "voip_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "voip_bindings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "extension_id",
            sa.Integer(),
            sa.ForeignKey("voip_extensions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("contact_uri", sa.String(500), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("user_agent", sa.String(200), nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.UniqueConstraint("extension_id", "contact_uri", name="uq_voip_bindings_extension_id"),
    )
    op.create_index("ix_voip_bindings_extension_id", "voip_bindings", ["extension_id"])
    op.create_index("ix_voip_bindings_expires_at", "voip_bindings", ["expires_at"])
    op.create_table(
        "voip_cdr",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("callee", sa.String(64), nullable=False),
        sa.Column(
            "caller_department_id",
            sa.Integer(),
            sa.ForeignKey("departments.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "callee_department_id",
            sa.Integer(),
            sa.ForeignKey("departments.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("disposition", sa.String(11), nullable=False),
        sa.Column("hangup_side", sa.String(10), nullable=False),
        sa.Column("sip_status", sa.Integer(), nullable=True),
        sa.Column("node", sa.String(100), nullable=False),
    )
    op.create_index("ix_voip_cdr_call_id", "voip_cdr", ["call_id"])
    op.create_index("ix_voip_cdr_started_at", "voip_cdr", ["started_at"])


def downgrade() -> None:
    op.drop_table("voip_cdr")
    op.drop_table("voip_bindings")
