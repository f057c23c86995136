"""The initial schema: every table, index and constraint of db/models.py as first deployed.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every table (parents first)."""
    op.create_table(
        "deployment",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),  # always 1: a single row
        sa.Column("storage_marker", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "user",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("api_key_hash", sa.String(length=64), nullable=False),
        sa.Column("token_balance", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("token_balance >= 0", name="ck_user_balance_non_negative"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_api_key_hash"), ["api_key_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_user_email"), ["email"], unique=True)

    op.create_table(
        "album",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("owner_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("album", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_album_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "idempotency_record",
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("user_id", "key"),
    )
    op.create_table(
        "rate_limit_hit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("bucket", sa.String(length=50), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rate_limit_hit", schema=None) as batch_op:
        batch_op.create_index("ix_rate_limit_hit_key", ["user_id", "bucket", "at_us"], unique=False)

    op.create_table(
        "token_transaction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("balance_after", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("token_transaction", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_token_transaction_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            "uq_refund_reference",
            ["reference"],
            unique=True,
            sqlite_where=sa.text("type = 'REFUND'"),
            postgresql_where=sa.text("type = 'REFUND'"),
        )

    op.create_table(
        "batch",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("album_id", sa.String(), nullable=True),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("execution_mode", sa.String(length=16), nullable=False),
        sa.Column("tokens_charged", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["album_id"], ["album.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batch_album_id"), ["album_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_batch_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_batch_user_id"), ["user_id"], unique=False)

    op.create_table(
        "image",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("album_id", sa.String(), nullable=False),
        sa.Column("original_key", sa.String(length=300), nullable=False),
        sa.Column("original_filename", sa.String(length=255), nullable=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["album_id"],
            ["album.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_album_id"), ["album_id"], unique=False)

    op.create_table(
        "enhancement_job",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("image_id", sa.String(), nullable=True),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("batch_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("tokens_cost", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tokens_refunded", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.String(length=1000), nullable=True),
        sa.Column("progress", sa.String(length=100), nullable=True),
        sa.Column("enhanced_key", sa.String(length=300), nullable=True),
        sa.Column("enhanced_width", sa.Integer(), nullable=True),
        sa.Column("enhanced_height", sa.Integer(), nullable=True),
        sa.Column("enhanced_size_bytes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batch.id"],
        ),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("enhancement_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enhancement_job_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_enhancement_job_image_id"), ["image_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_enhancement_job_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_enhancement_job_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    """Drop every table (children first)."""
    with op.batch_alter_table("enhancement_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enhancement_job_user_id"))
        batch_op.drop_index(batch_op.f("ix_enhancement_job_status"))
        batch_op.drop_index(batch_op.f("ix_enhancement_job_image_id"))
        batch_op.drop_index(batch_op.f("ix_enhancement_job_batch_id"))

    op.drop_table("enhancement_job")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_album_id"))

    op.drop_table("image")
    with op.batch_alter_table("batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_user_id"))
        batch_op.drop_index(batch_op.f("ix_batch_status"))
        batch_op.drop_index(batch_op.f("ix_batch_album_id"))

    op.drop_table("batch")
    with op.batch_alter_table("token_transaction", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_refund_reference", sqlite_where=sa.text("type = 'REFUND'"), postgresql_where=sa.text("type = 'REFUND'")
        )
        batch_op.drop_index(batch_op.f("ix_token_transaction_user_id"))

    op.drop_table("token_transaction")
    with op.batch_alter_table("rate_limit_hit", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_limit_hit_key")

    op.drop_table("rate_limit_hit")
    op.drop_table("idempotency_record")
    with op.batch_alter_table("album", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_album_owner_id"))

    op.drop_table("album")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_email"))
        batch_op.drop_index(batch_op.f("ix_user_api_key_hash"))

    op.drop_table("user")
    op.drop_table("deployment")
