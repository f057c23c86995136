"""Request and response bodies of the HTTP API (camelCase on the wire)."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from core.vocabulary import BatchStatus, JobStatus, OutputFormat, Tier

# The vocabulary's enums, so the OpenAPI lists exactly the values the service knows.
TierName = Tier
OutputFormatName = OutputFormat
JobStatusName = JobStatus
BatchStatusName = BatchStatus


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class ErrorOut(BaseModel):
    """Every error body: a message, sometimes with details."""

    model_config = ConfigDict(extra="allow")
    error: str


class MeOut(ApiModel):
    id: str
    email: str
    token_balance: int


class LedgerContextOut(ApiModel):
    """What a charge or refund was for: its batch, the album (None once deleted) and, for a refund, the photo."""

    batch_id: str
    album_id: str | None
    album_name: str | None
    tier: TierName
    images: int | None = Field(description="How many photos a charge paid for; None for a refund (one photo)")
    image_id: str | None = Field(default=None, description="The refunded photo (None once deleted)")
    image_filename: str | None = None


class TransactionOut(ApiModel):
    id: int
    amount: int
    type: Literal["GRANT", "CONSUME", "REFUND"]
    reference: str | None
    balance_after: int
    created_at: datetime
    context: LedgerContextOut | None = Field(default=None, description="A charge's or refund's batch; None for grants")


class TransactionsOut(ApiModel):
    transactions: list[TransactionOut]


NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold a NUL character


class AlbumCreate(ApiModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    description: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)


class AlbumOut(ApiModel):
    id: str
    name: str
    description: str | None
    created_at: datetime
    image_count: int = 0


class AlbumsOut(ApiModel):
    albums: list[AlbumOut]


class ImageJobOut(ApiModel):
    job_id: str
    batch_id: str
    tier: TierName
    status: JobStatusName


class ImageOut(ApiModel):
    id: str
    width: int
    height: int
    format: str
    size_bytes: int


class AlbumImageOut(ImageOut):
    filename: str | None
    created_at: datetime
    enhancement_jobs: list[ImageJobOut]


class AlbumDetailOut(AlbumOut):
    images: list[AlbumImageOut]


class UploadOut(ApiModel):
    images: list[ImageOut]


MAX_IMAGE_IDS = 500
IMAGE_IDS_RULE = f"imageIds must be a non-empty list of at most {MAX_IMAGE_IDS} distinct image ids"


class EnhanceRequest(ApiModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False)
    tier: TierName
    skip_already_enhanced: bool = Field(default=True, strict=True)
    image_ids: list[Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IMAGE_IDS,
        description="Enhance only these images of the album (default: all of them). Ids that are not images of "
        "this album are refused with 400 and listed in `unknownImageIds`. With this field, `totalImages` counts "
        "the named images.",
    )

    output_format: OutputFormatName | None = Field(
        default=None,
        description="The results' format: jpeg (the default), png, webp, avif, or auto (PNG when the image has "
        "transparency, else JPEG). PNG, WebP and AVIF keep transparency.",
    )
    keep_location: bool | None = Field(
        default=None,
        strict=True,
        description="Keep the photos' location (GPS and place names) in the results' metadata. Default: the "
        "service's KEEP_LOCATION_DEFAULT (off). The rest of the metadata (date, camera, keywords...) is always kept.",
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        pattern=NO_NUL,
        description="Where to POST the batch's final event (batch.completed, batch.cancelled or batch.failed), "
        "signed with your callback secret (POST /api/webhooks/callback-secret); an https URL on a public address. "
        "Ignored when nothing needs enhancing.",
    )

    @field_validator("image_ids")
    @classmethod
    def _distinct(cls, ids: list[str] | None) -> list[str] | None:
        if ids is not None and len(set(ids)) != len(ids):
            raise ValueError("duplicate image ids")
        return ids


class EnhanceJobRef(ApiModel):
    image_id: str
    job_id: str = Field(description="The batch id (the workflow id), as the contract says")
    enhancement_job_id: str


class EnhanceResponse(ApiModel):
    success: bool
    total_images: int
    skipped: int
    queued: int
    total_cost: int
    new_balance: int
    jobs: list[EnhanceJobRef]
    batch_id: str | None = None


class RefusalOut(ErrorOut):
    """The error the enhance would answer: its HTTP status, and its body (`error` and the facts it gives)."""

    status: int


class EnhanceQuoteOut(ApiModel):
    """What the enhance would do with the same body now. Where `refusal` is null, the enhance would answer 200
    with these `totalImages`, `skipped`, `queued`, `totalCost` and `newBalance`, queueing `imageIds` in this
    order; otherwise it would answer `refusal` and charge nothing (`newBalance` = `balance`)."""

    tier: TierName
    total_images: int
    skipped: int
    queued: int
    image_ids: list[str] = Field(description="The images the enhance would queue, in processing order")
    cost_per_image: int
    total_cost: int = Field(description="What the images it would queue cost (charged only without a refusal)")
    balance: int
    new_balance: int
    max_batch_size: int
    refusal: RefusalOut | None


class JobOut(ApiModel):
    id: str
    batch_id: str
    image_id: str | None = Field(description="None once the image was deleted")
    tier: TierName
    status: JobStatusName
    tokens_cost: int
    tokens_refunded: int
    attempts: int
    error_message: str | None
    progress: str | None = Field(default=None, description='The step of a long enhancement, e.g. "tile 3 of 12"')
    enhanced_width: int | None
    enhanced_height: int | None
    enhanced_size_bytes: int | None
    enhanced_format: str | None = Field(
        default=None, description="The result's media type (image/jpeg, image/png, image/webp, image/avif)"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BatchOut(ApiModel):
    batch_id: str
    album_id: str | None = Field(description="None once the album was deleted")
    tier: TierName
    status: BatchStatusName
    total_images: int
    completed: int
    failed: int
    cancelled: int
    pending: int
    tokens_charged: int
    tokens_refunded: int
    created_at: datetime
    output_format: OutputFormatName = OutputFormat.JPEG
    keep_location: bool = False
    jobs: list[JobOut]


class BatchCommandOut(ApiModel):
    """The batch's status right after a cancel, pause or resume was accepted."""

    batch_id: str
    status: BatchStatusName


# Webhooks -------------------------------------------------------------------------------------------------------------

WEBHOOK_EVENTS_DOC = (
    "Event types: batch.completed, batch.cancelled, batch.failed, job.completed, job.failed (default: all of them)"
)


class WebhookEndpointCreate(ApiModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)
    url: str = Field(min_length=1, max_length=2000, pattern=NO_NUL, description="An https URL on a public address")
    events: list[Annotated[str, Field(max_length=40)]] | None = Field(
        default=None, max_length=10, description=WEBHOOK_EVENTS_DOC
    )
    description: str | None = Field(default=None, max_length=200, pattern=NO_NUL)


class WebhookEndpointUpdate(ApiModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)
    enabled: bool | None = Field(default=None, strict=True, description="true re-enables a disabled endpoint")
    events: list[Annotated[str, Field(max_length=40)]] | None = Field(default=None, max_length=10)
    rotate_secret: bool = Field(
        default=False,
        strict=True,
        description="A new secret (in the answer, once); the old one keeps signing beside it for a grace period",
    )


class WebhookEndpointOut(ApiModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime
    secret: str | None = Field(default=None, description="Only when created or rotated: keep it, it is not shown again")
    previous_secret_expires_at: datetime | None = None


class WebhookEndpointsOut(ApiModel):
    endpoints: list[WebhookEndpointOut]


class WebhookAttemptOut(ApiModel):
    number: int
    started_at: datetime
    finished_at: datetime | None = Field(description="Empty while the attempt runs, or if its worker died")
    status_code: int | None
    latency_ms: int | None
    error: str | None
    response_excerpt: str | None


class WebhookDeliveryOut(ApiModel):
    id: str
    webhook_id: str = Field(description="The message's id: the `webhook-id` header of every attempt")
    event_type: str
    status: Literal["PENDING", "DELIVERED", "FAILED"]
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempts: list[WebhookAttemptOut]


class WebhookDeliveriesOut(ApiModel):
    deliveries: list[WebhookDeliveryOut]


class CallbackSecretOut(ApiModel):
    secret: str = Field(description="Signs the callbacks of enhance requests' callbackUrl; shown once")
