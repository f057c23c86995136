"""The contracts between the batch workflow, its activities and the launchers: plain, frozen inputs and results
that both sides import (this module sits below workflows/ and activities/ and imports nothing of the project)."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetrySettings:
    """How an image activity is retried and timed out."""

    max_attempts: int = 5
    initial_interval_seconds: float = 1.0
    max_interval_seconds: float = 30.0
    heartbeat_timeout_seconds: float = 10.0
    start_to_close_seconds: float = 300.0
    sr_start_to_close_seconds: float = 1800.0  # an image the network enlarges may take minutes on a CPU


@dataclass(frozen=True)
class BatchEnhanceInput:
    """Everything the batch workflow needs: ids only, never image bytes."""

    batch_id: str
    album_id: str
    user_id: str
    tier: str
    job_ids: list[str]
    image_ids: list[str]
    retry: RetrySettings = field(default_factory=RetrySettings)
    # Jobs whose image the super-resolution network will enlarge, and the task queue their activity runs on.
    sr_job_ids: list[str] = field(default_factory=list)
    sr_task_queue: str | None = None


@dataclass(frozen=True)
class ProcessJobInput:
    job_id: str


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
