"""sms: directory, templates, broadcasts with one row per recipient, inbound, duty log

Revision ID: sms_0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "sms_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("sms",)
depends_on: str | Sequence[str] | None = "core_0001"


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "sms_contacts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("mobile", sa.String(16), nullable=False),
        sa.Column(
            "department_id",
            sa.Integer(),
            sa.ForeignKey("departments.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("mobile", name="uq_sms_contacts_mobile"),
    )
    op.create_index("ix_sms_contacts_department_id", "sms_contacts", ["department_id"])
    op.create_index("ix_sms_contacts_role", "sms_contacts", ["role"])
    op.create_table(
        "sms_groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "department_id",
            sa.Integer(),
            sa.ForeignKey("departments.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("roster", sa.String(100), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("name", name="uq_sms_groups_name"),
    )
    op.create_table(
        "sms_group_members",
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("sms_groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("sms_contacts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "sms_duty_shifts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("roster", sa.String(100), nullable=False),
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("sms_contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _ts("starts_at"),
        _ts("ends_at"),
    )
    op.create_index("ix_sms_duty_shifts_roster", "sms_duty_shifts", ["roster"])
    op.create_table(
        "sms_templates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("name", name="uq_sms_templates_name"),
    )
    op.create_table(
        "sms_duty_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("happened", sa.Text(), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        _ts("at"),
    )
    op.create_index("ix_sms_duty_log_at", "sms_duty_log", ["at"])
    op.create_table(
        "sms_broadcasts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("approved_by", sa.String(100), nullable=True),
        _ts("send_at"),
        _ts("created_at"),
        _ts("completed_at", nullable=True),
        sa.Column("encoding", sa.String(8), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("recipient_count", sa.Integer(), nullable=False),
        sa.Column("audience", sa.String(500), nullable=False),
        sa.Column(
            "incident_id",
            sa.Integer(),
            sa.ForeignKey("sms_duty_log.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("cap_xml", sa.Text(), nullable=True),
    )
    op.create_index("ix_sms_broadcasts_status", "sms_broadcasts", ["status"])
    op.create_index("ix_sms_broadcasts_incident_id", "sms_broadcasts", ["incident_id"])
    op.create_table(
        "sms_recipients",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "broadcast_id",
            sa.Integer(),
            sa.ForeignKey("sms_broadcasts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("sms_contacts.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("mobile", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        _ts("attempt_started_at", nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=False),
        sa.Column("provider_sid", sa.String(64), nullable=True),
        sa.Column("error", sa.String(200), nullable=False),
        _ts("updated_at"),
        _ts("acknowledged_at", nullable=True),
        sa.UniqueConstraint("broadcast_id", "mobile", name="uq_sms_recipients_broadcast_id"),
    )
    op.create_index("ix_sms_recipients_broadcast_id", "sms_recipients", ["broadcast_id"])
    op.create_index("ix_sms_recipients_mobile", "sms_recipients", ["mobile"])
    op.create_index("ix_sms_recipients_provider_sid", "sms_recipients", ["provider_sid"])
    op.create_index("ix_sms_recipients_work", "sms_recipients", ["state", "next_attempt_at"])
    op.create_table(
        "sms_inbound",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider_sid", sa.String(64), nullable=False),
        sa.Column("from_mobile", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "recipient_id",
            sa.Integer(),
            sa.ForeignKey("sms_recipients.id", ondelete="SET NULL"),
            nullable=True,
        ),
        _ts("received_at"),
        sa.UniqueConstraint("provider_sid", name="uq_sms_inbound_provider_sid"),
    )
    op.create_index("ix_sms_inbound_from_mobile", "sms_inbound", ["from_mobile"])


def downgrade() -> None:
    for table in (
        "sms_inbound",
        "sms_recipients",
        "sms_broadcasts",
        "sms_duty_log",
        "sms_templates",
        "sms_duty_shifts",
        "sms_group_members",
        "sms_groups",
        "sms_contacts",
    ):
        op.drop_table(table)
