"""The product's vocabulary, defined once: tiers, statuses, activity, signal and query names, search attributes.

No imports beyond the standard library, so the workflow sandbox, the activities, the database models and the API
all share it.
"""

from dataclasses import dataclass
from enum import StrEnum


class Tier(StrEnum):
    TIER_1K = "TIER_1K"
    TIER_2K = "TIER_2K"
    TIER_4K = "TIER_4K"


@dataclass(frozen=True)
class TierSpec:
    """What a tier costs per image and the long side (pixels) of its output."""

    cost: int
    long_side: int


TIERS: dict[Tier, TierSpec] = {
    Tier.TIER_1K: TierSpec(cost=2, long_side=1024),
    Tier.TIER_2K: TierSpec(cost=5, long_side=2048),
    Tier.TIER_4K: TierSpec(cost=10, long_side=4096),
}
TIER_LONG_SIDES: dict[str, int] = {tier.value: spec.long_side for tier, spec in TIERS.items()}  # by tier name


class OutputFormat(StrEnum):
    """The format an enhance request asks for: auto keeps transparency (PNG) when the source has any, else JPEG."""

    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    AVIF = "avif"
    AUTO = "auto"


# A result's file: its extension (in its storage key and download names) by the format written, and its media type
# by extension.
RESULT_EXTENSIONS: dict[str, str] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "AVIF": "avif"}
RESULT_MEDIA_TYPES: dict[str, str] = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
}


def result_extension(key: str) -> str:
    """The extension of a stored result's format, from its key (results stored before formats are JPEG)."""
    extension = key.rsplit(".", 1)[-1]
    return extension if extension in RESULT_MEDIA_TYPES else "jpg"


def result_media_type(key: str) -> str:
    """The media type of a stored result, from its key's extension."""
    return RESULT_MEDIA_TYPES[result_extension(key)]


class JobStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


IN_FLIGHT_STATUSES = (JobStatus.PENDING, JobStatus.PROCESSING)


class BatchStatus(StrEnum):
    CHARGED = "CHARGED"  # committed and paid for; the workflow is not known to have started
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # started, and holding before its next image until resumed
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


# A batch in one of these statuses has a driver (workflow or in-process task) that will still act on it.
ACTIVE_BATCH_STATUSES = (BatchStatus.RUNNING, BatchStatus.PAUSED)
UNFINISHED_BATCH_STATUSES = (BatchStatus.CHARGED, *ACTIVE_BATCH_STATUSES)
FINAL_BATCH_STATUSES = (BatchStatus.COMPLETED, BatchStatus.CANCELLED, BatchStatus.FAILED)


class Activity(StrEnum):
    """Registered activity names (the workflow schedules them by name)."""

    PROCESS_JOB = "process_enhancement_job"
    CLOSE_JOB = "close_enhancement_job"
    SET_BATCH_STATUS = "set_batch_status"
    FINISH_BATCH = "finish_batch"
    ATTEMPT_WEBHOOK = "attempt_webhook_delivery"
    GIVE_UP_WEBHOOK = "give_up_webhook_delivery"


class Signal(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    JOB_STEP = "job_step"  # sent by a long-running image activity: the step it is at (e.g. "tile 3 of 12")


PROGRESS_QUERY = "progress"


class SearchAttribute(StrEnum):
    """Keyword search attributes of a batch workflow (registered on the server)."""

    ALBUM_ID = "AlbumId"
    USER_ID = "UserId"
    ENHANCEMENT_TIER = "EnhancementTier"
    BATCH_STATUS = "BatchStatus"


# What a job's row keeps of its failure (its error message) and of a long image's step, in characters.
MAX_ERROR_MESSAGE = 1000
MAX_PROGRESS = 100

# Application error types that no retry can fix.
INVALID_IMAGE_ERROR = "InvalidImage"
MISSING_ORIGINAL_ERROR = "MissingOriginal"


class WebhookEvent(StrEnum):
    """The events a webhook endpoint can subscribe to (the `type` of a message)."""

    BATCH_COMPLETED = "batch.completed"
    BATCH_CANCELLED = "batch.cancelled"
    BATCH_FAILED = "batch.failed"
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"


# The event a batch's final status sends.
BATCH_EVENTS: dict[BatchStatus, WebhookEvent] = {
    BatchStatus.COMPLETED: WebhookEvent.BATCH_COMPLETED,
    BatchStatus.CANCELLED: WebhookEvent.BATCH_CANCELLED,
    BatchStatus.FAILED: WebhookEvent.BATCH_FAILED,
}
# A test message sent from the settings panel or `POST /api/webhooks/{id}/test` (not subscribable: always sent).
WEBHOOK_TEST_EVENT = "webhook.test"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"  # attempts go on (or are about to start)
    DELIVERED = "DELIVERED"  # the receiver answered 2xx
    FAILED = "FAILED"  # given up: out of time, refused (e.g. a private address), or the endpoint was disabled


# What a delivery attempt keeps of the receiver's answer and of its error, in characters, and reads of its body.
MAX_WEBHOOK_EXCERPT = 500
MAX_WEBHOOK_RESPONSE_BYTES = 64 * 1024
