"""Accounts for people: passwords, verified emails, sessions, named API keys, mailed links, sign-in throttling.

Every user's API key moves to the new api_key table (named "Operator key"); the user's own column keeps a unique
placeholder that is no key (see db/models.User).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Add the user's columns and the four tables, then move the keys."""
    # Plain ALTER TABLE (no batch copy of the table: SQLite adds and drops columns in place since 3.35).
    op.add_column("user", sa.Column("password_hash", sa.String(length=255), nullable=True))
    op.add_column("user", _timestamp("email_verified_at", nullable=True))
    op.add_column("user", _timestamp("deleted_at", nullable=True))
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        _timestamp("created_at"),
        _timestamp("last_used_at", nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_key_hash"), ["key_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_api_key_user_id"), ["user_id"], unique=False)
    op.create_table(
        "user_session",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _timestamp("created_at"),
        _timestamp("last_seen_at"),
        _timestamp("expires_at"),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("user_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_session_token_hash"), ["token_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_user_session_user_id"), ["user_id"], unique=False)
    op.create_table(
        "account_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at"),
        _timestamp("used_at", nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("account_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_token_user_id"), ["user_id"], unique=False)
    op.create_table(
        "throttle_hit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("bucket", sa.String(length=50), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("throttle_hit", schema=None) as batch_op:
        batch_op.create_index("ix_throttle_hit_key", ["subject", "bucket", "at_us"], unique=False)
    # The keys move: same hash, now named and revocable; the old column keeps a placeholder that is no key.
    op.execute(
        "INSERT INTO api_key (id, user_id, name, key_hash, created_at) "
        "SELECT id, id, 'Operator key', api_key_hash, created_at FROM \"user\""
    )
    op.execute("UPDATE \"user\" SET api_key_hash = 'retired:' || id")


def downgrade() -> None:
    """Give each user back its oldest key, then drop what the upgrade added (passwords and sessions are lost)."""
    op.execute(
        'UPDATE "user" SET api_key_hash = (SELECT k.key_hash FROM api_key k WHERE k.user_id = "user".id '
        'ORDER BY k.created_at, k.id LIMIT 1) WHERE EXISTS (SELECT 1 FROM api_key k WHERE k.user_id = "user".id)'
    )
    for table in ("throttle_hit", "account_token", "user_session", "api_key"):
        op.drop_table(table)
    for column in ("deleted_at", "email_verified_at", "password_hash"):
        op.drop_column("user", column)
