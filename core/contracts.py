"""The contracts between the batch workflow, its activities and the launchers: plain, frozen inputs and results
that both sides import, and the side effects the in-process driver needs (this module sits below workflows/ and
activities/ and imports nothing of the project outside core/)."""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from core.vocabulary import BatchStatus


@dataclass(frozen=True)
class RetrySettings:
    """How an image activity is retried and timed out (derived from the settings, which hold the defaults)."""

    max_attempts: int
    initial_interval_seconds: float
    max_interval_seconds: float
    heartbeat_timeout_seconds: float
    start_to_close_seconds: float
    # For an image the network enlarges when its input has no time of its own (sr_job_seconds).
    sr_start_to_close_seconds: float


@dataclass(frozen=True)
class BatchEnhanceInput:
    """Everything the batch workflow needs: ids only, never image bytes."""

    batch_id: str
    album_id: str
    user_id: str
    tier: str
    job_ids: list[str]
    image_ids: list[str]
    retry: RetrySettings
    # Jobs whose image the super-resolution network will enlarge, and the task queue their activity runs on.
    sr_job_ids: list[str] = field(default_factory=list)
    sr_task_queue: str | None = None
    # How long each of those jobs' activity may run (start to close): its tiles times the time a tile may take.
    sr_job_seconds: dict[str, float] = field(default_factory=dict)
    # What the request asked its images to be written as (a batch started before these existed: JPEG, no location).
    output_format: str = "jpeg"
    keep_location: bool = False


@dataclass(frozen=True)
class ProcessJobInput:
    job_id: str
    output_format: str = "jpeg"  # as the batch's request asked (BatchEnhanceInput)
    keep_location: bool = False


@dataclass(frozen=True)
class ProcessJobResult:
    job_id: str
    status: str
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class CloseJobInput:
    """Close an unfinished job as FAILED or CANCELLED and refund it."""

    job_id: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class CloseJobResult:
    job_id: str
    status: str
    tokens_refunded: int


@dataclass(frozen=True)
class FinishBatchInput:
    batch_id: str
    status: str


@dataclass(frozen=True)
class SetBatchStatusInput:
    """Move a started batch between RUNNING and PAUSED."""

    batch_id: str
    status: str


@dataclass(frozen=True)
class JobStep:
    """The step a long-running image is at, e.g. "tile 3 of 12" (the `job_step` signal)."""

    job_id: str
    step: str


@dataclass
class BatchProgress:
    """Answer of the `progress` query."""

    batch_id: str
    total: int
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    pending: int = 0
    paused: bool = False
    cancel_requested: bool = False
    current_job_id: str | None = None
    current_image_id: str | None = None
    tokens_refunded: int = 0
    current_step: str | None = None
    status: str = "RUNNING"
    details: str = ""


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    status: str
    completed: int
    failed: int
    cancelled: int
    tokens_refunded: int


class JobInterrupted(Exception):
    """A cancel reached an image while it was being enhanced in this process (Temporal raises its CancelledError)."""


@dataclass(frozen=True)
class BatchCommands:
    """The commands recorded on a batch's row: how another API process reaches a batch running in this one."""

    status: BatchStatus
    cancel_requested: bool


class InProcessActivities(Protocol):
    """The side effects of a batch as the in-process driver (workflows/direct.py) takes them: the very activities
    Temporal runs, called in this process. activities.batch.BatchActivities implements it; api/main.py hands it to
    the driver, so workflows/ imports nothing of activities/ or db/."""

    def enhance_in_process(
        self, inp: ProcessJobInput, batch_id: str, cancelled: threading.Event, on_step: Callable[[str], None]
    ) -> ProcessJobResult:
        """Enhance the job on the calling thread; raise JobInterrupted at a checkpoint once `cancelled` is set.
        `on_step` hears the steps of a long image (e.g. "tile 3 of 12")."""
        ...

    def close_job(self, inp: CloseJobInput) -> CloseJobResult: ...

    def set_batch_status(self, inp: SetBatchStatusInput) -> None: ...

    def finish_batch(self, inp: FinishBatchInput) -> None: ...

    def batch_commands(self, batch_id: str) -> BatchCommands | None:
        """The batch row's status and cancel flag (None: no such batch)."""
        ...


@dataclass(frozen=True)
class WebhookRetry:
    """How one webhook delivery is retried: exponential backoff (doubling) from the initial interval up to the
    maximum, each attempt bounded by its timeout, until the delivery has been tried for `give_up_after_seconds`
    (derived from the settings by services.webhooks.webhook_retry)."""

    initial_interval_seconds: float
    max_interval_seconds: float
    give_up_after_seconds: float
    attempt_timeout_seconds: float


@dataclass(frozen=True)
class WebhookDeliveryInput:
    """The delivery workflow's input: the delivery's id (its message and target are rows) and its retry rules."""

    delivery_id: str
    retry: WebhookRetry


@dataclass(frozen=True)
class WebhookAttemptInput:
    delivery_id: str


@dataclass(frozen=True)
class WebhookAttemptResult:
    """How one attempt ended: delivered (2xx), or not and whether another attempt may succeed (a refused address,
    a disabled endpoint or a deleted one end the delivery at once; it is then FAILED already)."""

    delivery_id: str
    delivered: bool
    retry: bool
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class GiveUpWebhookInput:
    """Mark a delivery that ran out of time FAILED."""

    delivery_id: str
    reason: str


class InProcessWebhooks(Protocol):
    """A webhook delivery's side effects as the in-process driver (workflows/webhook_direct.py) takes them: the
    very functions the delivery workflow's activities run. activities.webhooks.WebhookActivities implements it."""

    async def attempt_once(self, inp: WebhookAttemptInput) -> WebhookAttemptResult:
        """One attempt, logged (its row written before the request and completed after it), within its timeout."""
        ...

    def give_up(self, inp: GiveUpWebhookInput) -> None: ...


# A webhook delivery's workflow id names its delivery row (a batch's workflow id is the batch id itself).
WEBHOOK_WORKFLOW_PREFIX = "webhook-"


def webhook_workflow_id(delivery_id: str) -> str:
    return f"{WEBHOOK_WORKFLOW_PREFIX}{delivery_id}"


def delivery_of_workflow(workflow_id: str) -> str | None:
    """The delivery a webhook workflow id names; None for any other workflow (a batch's)."""
    return (
        workflow_id.removeprefix(WEBHOOK_WORKFLOW_PREFIX) if workflow_id.startswith(WEBHOOK_WORKFLOW_PREFIX) else None
    )
