"""voip: carrier tariffs per destination class, for rating and the cost report

Revision ID: voip_0004
Revises: voip_0003
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "voip_0004"
down_revision: str | Sequence[str] | None = "voip_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tariffs = op.create_table(
        "voip_tariffs",
        sa.Column("destination", sa.String(16), primary_key=True),
        sa.Column("retail_per_minute", sa.Integer(), nullable=False),
        sa.Column("increment_seconds", sa.Integer(), nullable=False),
    )
    # fen per minute; international billed by 6-second increments.
    op.bulk_insert(
        tariffs,
        [
            {"destination": "local", "retail_per_minute": 10, "increment_seconds": 60},
            {"destination": "national", "retail_per_minute": 30, "increment_seconds": 60},
            {"destination": "international", "retail_per_minute": 300, "increment_seconds": 6},
        ],
    )


def downgrade() -> None:
    op.drop_table("voip_tariffs")
