"""Batches remember the output their request asked for: a format and whether the location is kept.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Two columns with defaults: existing batches were JPEG without location, as these say."""
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.add_column(sa.Column("output_format", sa.String(length=8), server_default="jpeg", nullable=False))
        batch_op.add_column(sa.Column("keep_location", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.drop_column("keep_location")
        batch_op.drop_column("output_format")
