"""voip: the dial plan as data, and department policies (class of service, caller ID)

Revision ID: voip_0003
Revises: voip_0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "voip_0003"
down_revision: str | Sequence[str] | None = "voip_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The defaults of voip.dialplan.DEFAULT_RULES, written out: a migration must not
# change meaning when the code's defaults change later.
DEFAULT_RULES = [
    ("extensions", "1000-8999", "", "extension numbers"),
    ("outbound_prefix", "0", "", "dial 0 for an outside line"),
    ("area_code", "010", "", "our own area code: local tariff"),
    ("emergency", "110", "", "police"),
    ("emergency", "119", "", "fire"),
    ("emergency", "120", "", "ambulance"),
    ("emergency", "122", "", "traffic accidents"),
    ("feature", "*97", "voicemail", "voicemail"),
    ("feature", "*72", "forward_on", "forward all calls to the number that follows"),
    ("feature", "*73", "forward_off", "forwarding off"),
    ("feature", "*78", "dnd_on", "do not disturb on"),
    ("feature", "*79", "dnd_off", "do not disturb off"),
    ("feature", "*8", "pickup", "pick up a ringing call"),
    ("feature", "*43", "echo", "echo test"),
    ("feature", "*44", "test_tone", "test tone (1004 Hz)"),
]


def upgrade() -> None:
    rules = op.create_table(
        "voip_dial_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("pattern", sa.String(32), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.UniqueConstraint("kind", "pattern", name="uq_voip_dial_rules_kind"),
    )
    op.bulk_insert(
        rules,
        [
            {"kind": kind, "pattern": pattern, "target": target, "description": text}
            for kind, pattern, target, text in DEFAULT_RULES
        ],
    )
    op.create_table(
        "voip_department_policies",
        sa.Column(
            "department_id",
            sa.Integer(),
            sa.ForeignKey("departments.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("class_of_service", sa.String(13), nullable=True),
        sa.Column("caller_id", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("voip_department_policies")
    op.drop_table("voip_dial_rules")
