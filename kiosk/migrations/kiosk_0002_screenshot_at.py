"""kiosk: when the fleet board's screenshot of a kiosk was taken

Revision ID: kiosk_0002
Revises: kiosk_0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "kiosk_0002"
down_revision: str | Sequence[str] | None = "kiosk_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "kiosk_devices", sa.Column("screenshot_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("kiosk_devices") as batch:
        batch.drop_column("screenshot_at")
