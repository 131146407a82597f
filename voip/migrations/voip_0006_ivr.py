"""voip: auto-attendant (IVR) menus

Revision ID: voip_0006
Revises: voip_0005
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "voip_0006"
down_revision: str | Sequence[str] | None = "voip_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voip_ivr_menus",
        sa.Column("number", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("greeting", sa.String(1000), nullable=False),
        sa.Column("options", sa.String(500), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("voip_ivr_menus")
