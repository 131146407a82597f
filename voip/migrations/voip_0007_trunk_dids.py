"""voip: the carrier trunk's DID table (inbound numbers to extensions, groups, IVR)

Revision ID: voip_0007_trunk_dids
Revises: voip_0006
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "voip_0007_trunk_dids"
down_revision: str | Sequence[str] | None = "voip_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voip_trunk_dids",
        sa.Column("did", sa.String(24), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("voip_trunk_dids")
