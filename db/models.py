"""Database tables: users, albums, images, batches, enhancement jobs and the token ledger."""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# Re-exported for the callers that think in tables; defined once in core.vocabulary.
from core.vocabulary import IN_FLIGHT_STATUSES as IN_FLIGHT_STATUSES
from core.vocabulary import MAX_ERROR_MESSAGE, MAX_PROGRESS, MAX_WEBHOOK_EXCERPT, result_media_type
from core.vocabulary import BatchStatus as BatchStatus
from core.vocabulary import DeliveryStatus as DeliveryStatus
from core.vocabulary import JobStatus as JobStatus
from core.vocabulary import OutputFormat as OutputFormat
from core.vocabulary import Tier as Tier
from core.webhook_rules import MAX_WEBHOOK_URL


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def new_id() -> str:
    """Return a new random identifier."""
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC that always comes back timezone-aware (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def timestamp_field(nullable: bool = False) -> Any:
    """A UTC timestamp column, defaulting to now unless nullable."""
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def retired_key_placeholder() -> str:
    """A unique value for the retired `user.api_key_hash` column that no API key hashes to (not 64 hex digits)."""
    return f"retired:{new_id()}"


class LedgerType(StrEnum):
    GRANT = "GRANT"
    CONSUME = "CONSUME"
    REFUND = "REFUND"


class User(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=320)
    # Retired at revision 0004: keys live in ApiKey now (any number per user, named, revocable). The column stays
    # (SQLite cannot drop it while other tables refer to this one) and holds a unique placeholder that is no key.
    api_key_hash: str = Field(default_factory=retired_key_placeholder, unique=True, index=True, max_length=64)
    token_balance: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = timestamp_field()
    password_hash: str | None = Field(default=None, max_length=255)  # argon2id; None: signs in with keys only
    email_verified_at: datetime | None = timestamp_field(nullable=True)
    # Set when the person deleted their account: the row stays, anonymised, under the ledger and batches.
    deleted_at: datetime | None = timestamp_field(nullable=True)

    __table_args__ = (sa.CheckConstraint("token_balance >= 0", name="ck_user_balance_non_negative"),)


class Album(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    owner_id: str = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    created_at: datetime = timestamp_field()


class Image(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    album_id: str = Field(foreign_key="album.id", index=True)
    original_key: str = Field(max_length=300)
    original_filename: str | None = Field(default=None, max_length=255)
    width: int
    height: int
    format: str = Field(max_length=16)
    size_bytes: int
    sort_order: int = 0
    created_at: datetime = timestamp_field()


class Batch(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=100)
    # None once the album is deleted: the batch stays as the history of what was charged and refunded.
    album_id: str | None = Field(default=None, foreign_key="album.id", index=True, ondelete="SET NULL")
    user_id: str = Field(foreign_key="user.id", index=True)
    tier: Tier = Field(sa_type=sa.String(16))
    status: BatchStatus = Field(default=BatchStatus.CHARGED, sa_type=sa.String(16), index=True)
    execution_mode: str = Field(max_length=16)
    tokens_charged: int
    cancel_requested: bool = False
    created_at: datetime = timestamp_field()
    started_at: datetime | None = timestamp_field(nullable=True)
    finished_at: datetime | None = timestamp_field(nullable=True)
    # What the request asked its images to be written as: the format, and whether the location stays in them.
    output_format: OutputFormat = Field(
        default=OutputFormat.JPEG, sa_type=sa.String(8), sa_column_kwargs={"server_default": "jpeg"}
    )
    keep_location: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class EnhancementJob(SQLModel, table=True):
    __tablename__ = "enhancement_job"

    id: str = Field(default_factory=new_id, primary_key=True)
    # None once the image is deleted: the job stays, so the ledger's `job:{id}` references keep resolving.
    image_id: str | None = Field(default=None, foreign_key="image.id", index=True, ondelete="SET NULL")
    user_id: str = Field(foreign_key="user.id", index=True)
    batch_id: str = Field(foreign_key="batch.id", index=True)
    position: int = 0
    tier: Tier = Field(sa_type=sa.String(16))
    tokens_cost: int
    status: JobStatus = Field(default=JobStatus.PENDING, sa_type=sa.String(16), index=True)
    tokens_refunded: int = 0
    attempts: int = 0
    error_message: str | None = Field(default=None, max_length=MAX_ERROR_MESSAGE)
    progress: str | None = Field(default=None, max_length=MAX_PROGRESS)  # the step of a long job, e.g. "tile 3 of 12"
    enhanced_key: str | None = Field(default=None, max_length=300)
    enhanced_width: int | None = None
    enhanced_height: int | None = None
    enhanced_size_bytes: int | None = None
    created_at: datetime = timestamp_field()
    started_at: datetime | None = timestamp_field(nullable=True)
    finished_at: datetime | None = timestamp_field(nullable=True)

    @property
    def enhanced_format(self) -> str | None:
        """The result's media type (its storage key says which format it was written in)."""
        return result_media_type(self.enhanced_key) if self.enhanced_key is not None else None


class TokenTransaction(SQLModel, table=True):
    __tablename__ = "token_transaction"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="user.id", index=True)
    amount: int
    type: LedgerType = Field(sa_type=sa.String(16))
    reference: str | None = Field(default=None, max_length=200)
    balance_after: int
    created_at: datetime = timestamp_field()

    # A job is refunded at most once, whatever retries or races happen.
    __table_args__ = (
        sa.Index(
            "uq_refund_reference",
            "reference",
            unique=True,
            sqlite_where=sa.text("type = 'REFUND'"),
            postgresql_where=sa.text("type = 'REFUND'"),
        ),
    )


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"

    user_id: str = Field(foreign_key="user.id", primary_key=True)
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    # Records written before outcomes were stored kept the answer's HTTP status here; now always None.
    status_code: int | None = None
    response_body: str | None = None  # the outcome of the key's first request (JSON); None while it runs
    created_at: datetime = timestamp_field()


class RateLimitHit(SQLModel, table=True):
    """One admitted request in a per-user sliding window; at most `limit` rows are kept per user and bucket."""

    __tablename__ = "rate_limit_hit"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="user.id")
    bucket: str = Field(max_length=50)
    at_us: int = Field(sa_type=sa.BigInteger)  # epoch microseconds: exact comparisons at the window's edge

    __table_args__ = (sa.Index("ix_rate_limit_hit_key", "user_id", "bucket", "at_us"),)


class Deployment(SQLModel, table=True):
    """A single row: the random marker that every storage of this deployment carries (see services/deployment)."""

    id: int = Field(default=1, primary_key=True)
    storage_marker: str = Field(max_length=32)
    created_at: datetime = timestamp_field()


class ApiKey(SQLModel, table=True):
    """A named API key of a user; only its SHA-256 is stored, so the key itself is shown once, when it is made."""

    __tablename__ = "api_key"

    id: str = Field(default_factory=new_id, primary_key=True)
    user_id: str = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=100)
    key_hash: str = Field(unique=True, index=True, max_length=64)
    created_at: datetime = timestamp_field()
    last_used_at: datetime | None = timestamp_field(nullable=True)


class UserSession(SQLModel, table=True):
    """A signed-in browser: the cookie carries a secret token, the row only its SHA-256. `id` is the public name
    the account page lists and revokes it by."""

    __tablename__ = "user_session"

    id: str = Field(default_factory=new_id, primary_key=True)
    user_id: str = Field(foreign_key="user.id", index=True)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    created_at: datetime = timestamp_field()
    last_seen_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field()  # the absolute timeout; the idle one counts from last_seen_at
    user_agent: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=64)


class AccountToken(SQLModel, table=True):
    """A single-use, expiring link sent by mail (email verification, password reset): only its SHA-256 is kept."""

    __tablename__ = "account_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(foreign_key="user.id", index=True)
    purpose: str = Field(max_length=16)  # "verify" or "reset"
    created_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field()
    used_at: datetime | None = timestamp_field(nullable=True)
    password_hash: str | None = Field(default=None, max_length=255)  # a sign-up's password, set when it is opened


class ThrottleHit(SQLModel, table=True):
    """One attempt in a sliding window keyed by a subject that need not be a user (an email's hash, an address)."""

    __tablename__ = "throttle_hit"

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=100)
    bucket: str = Field(max_length=50)
    at_us: int = Field(sa_type=sa.BigInteger)

    __table_args__ = (sa.Index("ix_throttle_hit_key", "subject", "bucket", "at_us"),)


class WebhookEndpoint(SQLModel, table=True):
    """Where a user's events are sent, signed with `secret` (and with `previous_secret` until it expires, after a
    rotation). A callbackUrl is an endpoint of its own with `batch_id` set, signed with the user's callback
    secret as it was when the batch was charged."""

    __tablename__ = "webhook_endpoint"

    id: str = Field(default_factory=new_id, primary_key=True)
    user_id: str = Field(foreign_key="user.id", index=True)
    url: str = Field(max_length=MAX_WEBHOOK_URL)
    events: str = Field(max_length=200)  # the subscribed event types, space-separated
    description: str | None = Field(default=None, max_length=200)
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_expires_at: datetime | None = timestamp_field(nullable=True)
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=200)
    # The first failed attempt since the last success: an endpoint failing for WEBHOOK_DISABLE_AFTER_DAYS is disabled.
    failing_since: datetime | None = timestamp_field(nullable=True)
    # Set for an enhance request's callbackUrl: that batch's events only, and not listed among the user's endpoints.
    batch_id: str | None = Field(default=None, foreign_key="batch.id", index=True)
    created_at: datetime = timestamp_field()


class WebhookMessage(SQLModel, table=True):
    """One event, as sent: its id is the `webhook-id` of every attempt and redelivery, its body the exact bytes."""

    __tablename__ = "webhook_message"

    id: str = Field(primary_key=True, max_length=100)
    user_id: str = Field(foreign_key="user.id", index=True)
    event_type: str = Field(max_length=40)
    body: str = Field(sa_type=sa.Text)
    created_at: datetime = timestamp_field()


class WebhookDelivery(SQLModel, table=True):
    """One message to one endpoint (a redelivery is a new delivery of the same message), and how it ended."""

    __tablename__ = "webhook_delivery"

    id: str = Field(default_factory=new_id, primary_key=True)
    message_id: str = Field(foreign_key="webhook_message.id", index=True)
    endpoint_id: str = Field(foreign_key="webhook_endpoint.id", index=True)
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_type=sa.String(16), index=True)
    attempts: int = 0
    error: str | None = Field(default=None, max_length=MAX_WEBHOOK_EXCERPT)
    created_at: datetime = timestamp_field()
    finished_at: datetime | None = timestamp_field(nullable=True)


class WebhookAttempt(SQLModel, table=True):
    """One attempt of a delivery: written before the request is sent, completed when it ends (an attempt whose
    worker died keeps `finished_at` empty)."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_delivery.id", index=True)
    number: int
    started_at: datetime = timestamp_field()
    finished_at: datetime | None = timestamp_field(nullable=True)
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = Field(default=None, max_length=MAX_WEBHOOK_EXCERPT)
    response_excerpt: str | None = Field(default=None, max_length=MAX_WEBHOOK_EXCERPT)


class WebhookCallbackSecret(SQLModel, table=True):
    """A user's secret for the callbackUrl of enhance requests (one per user, rotated like an endpoint's)."""

    __tablename__ = "webhook_callback_secret"

    user_id: str = Field(foreign_key="user.id", primary_key=True)
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_expires_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = timestamp_field()
