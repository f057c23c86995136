"""Batch bookkeeping shared by the API, the launchers and the reconciler."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol, TypeVar

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.config import Settings
from core.contracts import BatchEnhanceInput, RetrySettings
from core.errors import StartupRefused
from core.vocabulary import ACTIVE_BATCH_STATUSES, TIERS, Tier
from db import ledger, webhook_outbox
from db.models import Batch, BatchStatus, EnhancementJob, Image, JobStatus, utcnow
from imaging import ProcessLimits, SuperResolutionProcesses, SuperResolutionUnavailableError, sr
from imaging.config import EngineConfig, wants_super_resolution

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


Config = TypeVar("Config", bound="DataclassInstance")


def derived(config: type[Config], settings: Settings, setting_of: Mapping[str, str]) -> Config:
    """A config dataclass whose every field is the setting of the same name, or the one `setting_of` names;
    a setting left unset (None) keeps the config's own default. A field without a setting fails here, at start."""
    values = {item.name: getattr(settings, setting_of.get(item.name, item.name)) for item in fields(config)}
    return config(**{name: value for name, value in values.items() if value is not None})


# The settings behind the fields whose names differ (the environment's names are part of the deployment).
RETRY_SETTING_OF = {
    "max_attempts": "activity_max_attempts",
    "initial_interval_seconds": "activity_initial_retry_seconds",
    "max_interval_seconds": "activity_max_retry_seconds",
    "heartbeat_timeout_seconds": "activity_heartbeat_timeout_seconds",
    "start_to_close_seconds": "activity_start_to_close_seconds",
    "sr_start_to_close_seconds": "sr_activity_start_to_close_seconds",
}
ENGINE_SETTING_OF = {"engine": "enhance_engine"}

# A fresh SR process (an interpreter importing the engine) starts well within this on a loaded machine, and then
# runs a warm-up tile. Beside its tiles, an SR image decodes, finishes and encodes: together never more than the
# time of SR_OVERHEAD_TILES tiles, the warm-up included.
SR_START_SECONDS = 60.0
SR_OVERHEAD_TILES = 3


def retry_settings(settings: Settings) -> RetrySettings:
    """The image activity's retry policy, from the settings."""
    return derived(RetrySettings, settings, RETRY_SETTING_OF)


def engine_config(settings: Settings) -> EngineConfig:
    """The imaging engine's knobs, from the settings (it validates them; unset ones keep the engine's default)."""
    return derived(EngineConfig, settings, ENGINE_SETTING_OF)


class _CountedJob(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def tokens_refunded(self) -> int: ...


@dataclass(frozen=True)
class JobCounts:
    """A batch's jobs by status, and the tokens they gave back; `pending` is every job not finished yet."""

    total: int
    completed: int
    failed: int
    cancelled: int
    pending: int
    tokens_refunded: int


def count_jobs(jobs: Iterable[_CountedJob]) -> JobCounts:
    """The counts every view of a batch shows (the batch API, its event stream)."""
    jobs = list(jobs)
    count = {status: sum(1 for job in jobs if job.status == status) for status in JobStatus}
    return JobCounts(
        total=len(jobs),
        completed=count[JobStatus.COMPLETED],
        failed=count[JobStatus.FAILED],
        cancelled=count[JobStatus.CANCELLED],
        pending=count[JobStatus.PENDING] + count[JobStatus.PROCESSING],
        tokens_refunded=sum(job.tokens_refunded for job in jobs),
    )


def verify_super_resolution(settings: Settings) -> None:
    """Refuse to start a process that enhances when its SR settings cannot run here (SR_DEVICE=cuda without CUDA,
    ENHANCE_ENGINE=sr without the runtime): one clear error at start, not every SR image failing its retries.
    ENHANCE_ENGINE=auto on the CPU needs nothing: it enlarges classically when the runtime is missing."""
    config = engine_config(settings)
    if config.engine == "classic" or (config.engine == "auto" and config.sr_device == "cpu"):
        return
    try:
        sr.check(config)
    except SuperResolutionUnavailableError as exc:
        raise StartupRefused(str(exc)) from None


def super_resolution_processes(settings: Settings) -> SuperResolutionProcesses | None:
    """The child processes that run the network (started on first use), or None where it never runs: the classic
    engine, or auto without the runtime."""
    config = engine_config(settings)
    if config.engine == "classic" or (config.engine == "auto" and sr.unavailable_reason(config) is not None):
        return None
    limits = ProcessLimits(
        processes=settings.sr_processes,
        start_timeout_seconds=SR_START_SECONDS + settings.sr_tile_seconds,
        stall_seconds=settings.sr_tile_seconds,
        cancel_grace_seconds=settings.sr_cancel_grace_seconds,
        max_images=settings.sr_process_max_images,
        max_rss_mb=settings.sr_process_max_rss_mb,
    )
    return SuperResolutionProcesses(config, limits)


def jobs_of(session: Session, batch_id: str) -> list[EnhancementJob]:
    """The batch's jobs in processing order."""
    return list(
        session.exec(
            select(EnhancementJob)
            .where(col(EnhancementJob.batch_id) == batch_id)
            .order_by(col(EnhancementJob.position))
        )
    )


def batch_input(session: Session, batch: Batch, settings: Settings) -> BatchEnhanceInput:
    """The workflow input of a batch, from its rows."""
    jobs = jobs_of(session, batch.id)
    images = session.exec(select(Image).where(col(Image.id).in_([job.image_id for job in jobs])))
    return input_for(batch, jobs, list(images), settings)


def _kept(row_id: str | None) -> str:
    # Deleting an album or image is refused until its batches end, so an unfinished batch still has both.
    if row_id is None:
        raise ValueError("an unfinished batch lost its album or image")
    return row_id


def input_for(batch: Batch, jobs: list[EnhancementJob], images: list[Image], settings: Settings) -> BatchEnhanceInput:
    """The workflow input of a batch whose jobs (in processing order) and images are at hand."""
    sr_seconds = super_resolution_jobs(jobs, images, settings)
    return BatchEnhanceInput(
        batch_id=batch.id,
        album_id=_kept(batch.album_id),
        user_id=batch.user_id,
        tier=batch.tier,
        job_ids=[job.id for job in jobs],
        image_ids=[_kept(job.image_id) for job in jobs],
        retry=retry_settings(settings),
        sr_job_ids=list(sr_seconds),
        sr_task_queue=settings.sr_task_queue,
        sr_job_seconds=sr_seconds,
        output_format=batch.output_format,
        keep_location=batch.keep_location,
    )


def super_resolution_jobs(jobs: list[EnhancementJob], images: list[Image], settings: Settings) -> dict[str, float]:
    """The jobs whose image the network will enlarge (from the stored size and the tier; nothing decoded), each
    with the time its activity may take: a fresh SR process's start, and its tiles and a few more times
    SR_TILE_SECONDS."""
    config = engine_config(settings)
    sizes = {image.id: (image.width, image.height) for image in images}
    seconds = {}
    for job in jobs:
        width, height = sizes[_kept(job.image_id)]
        long_side = TIERS[Tier(job.tier)].long_side
        if wants_super_resolution(width, height, long_side, config):
            passes = sr.plan_passes(max(width, height), long_side, config.sr_min_scale)
            tiles = sr.count_tiles(width, height, passes, config.sr_tile_size)
            seconds[job.id] = SR_START_SECONDS + (tiles + SR_OVERHEAD_TILES) * settings.sr_tile_seconds
    return seconds


def mark_started(session: Session, batch_id: str) -> None:
    """Record that the batch's workflow runs (only a still-CHARGED batch moves)."""
    session.exec(
        update(Batch)
        .where(col(Batch.id) == batch_id, col(Batch.status) == BatchStatus.CHARGED)
        .values(status=BatchStatus.RUNNING, started_at=utcnow())
    )


def close_unstarted(session: Session, batch_id: str, final: BatchStatus, reason: str, links_base: str = "") -> int:
    """Close a batch not known to have started and refund its PENDING jobs; returns tokens refunded.

    A PROCESSING job means a workflow did start after all: its activity may still finish, so the workflow
    (not this function) closes that job.
    """
    moved = session.exec(
        update(Batch)
        .where(col(Batch.id) == batch_id, col(Batch.status) == BatchStatus.CHARGED)
        .values(status=final, finished_at=utcnow(), cancel_requested=final == BatchStatus.CANCELLED)
    )
    if not moved.rowcount:
        return 0
    job_status = JobStatus.CANCELLED if final == BatchStatus.CANCELLED else JobStatus.FAILED
    refunded = sum(
        ledger.refund_job(session, job.id, job_status, reason, from_statuses=(JobStatus.PENDING,))
        for job in jobs_of(session, batch_id)
    )
    # Its event goes with it; the reconciler starts the delivery (no driver runs this batch to do so).
    webhook_outbox.record_batch_event(session, batch_id, links_base)
    return refunded


def close_abandoned(session: Session, batch_id: str, final: BatchStatus, reason: str, links_base: str = "") -> int:
    """Close a started batch whose workflow has ended (or is gone) without recording its end: every job still in
    flight is refunded, since nothing will close it any more, and the batch takes its final status. Returns the
    tokens refunded; nothing happens if the batch has ended meanwhile."""
    moved = session.exec(
        update(Batch)
        .where(col(Batch.id) == batch_id, col(Batch.status).in_(ACTIVE_BATCH_STATUSES))
        .values(status=final, finished_at=utcnow())
    )
    if not moved.rowcount:
        return 0
    job_status = JobStatus.CANCELLED if final == BatchStatus.CANCELLED else JobStatus.FAILED
    refunded = sum(ledger.refund_job(session, job.id, job_status, reason) for job in jobs_of(session, batch_id))
    # As for a batch closed before it started: its event goes with it, the reconciler starts the delivery.
    webhook_outbox.record_batch_event(session, batch_id, links_base)
    return refunded
