"""Batch bookkeeping shared by the API, the launchers and the reconciler."""

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.config import Settings
from core.contracts import BatchEnhanceInput, RetrySettings
from core.vocabulary import TIERS, Tier
from db import ledger
from db.models import Batch, BatchStatus, EnhancementJob, Image, JobStatus, utcnow
from imaging.config import EngineConfig, wants_super_resolution


def retry_settings(settings: Settings) -> RetrySettings:
    """The image activity's retry policy, from the settings."""
    return RetrySettings(
        max_attempts=settings.activity_max_attempts,
        initial_interval_seconds=settings.activity_initial_retry_seconds,
        max_interval_seconds=settings.activity_max_retry_seconds,
        heartbeat_timeout_seconds=settings.activity_heartbeat_timeout_seconds,
        start_to_close_seconds=settings.activity_start_to_close_seconds,
        sr_start_to_close_seconds=settings.sr_activity_start_to_close_seconds,
    )


def engine_config(settings: Settings) -> EngineConfig:
    """The imaging engine's knobs, from the settings (it validates them)."""
    return EngineConfig(
        engine=settings.enhance_engine,
        sr_model=settings.sr_model,
        sr_min_scale=settings.sr_min_scale,
        sr_tile_size=settings.sr_tile_size,
        sr_threads=settings.sr_threads,
        sr_gpu_id=settings.sr_gpu_id,
        sr_noise=settings.sr_noise,
        sr_noise_auto=settings.sr_noise_auto,
    )


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
    return BatchEnhanceInput(
        batch_id=batch.id,
        album_id=_kept(batch.album_id),
        user_id=batch.user_id,
        tier=batch.tier,
        job_ids=[job.id for job in jobs],
        image_ids=[_kept(job.image_id) for job in jobs],
        retry=retry_settings(settings),
        sr_job_ids=super_resolution_jobs(jobs, images, settings),
        sr_task_queue=settings.sr_task_queue,
    )


def super_resolution_jobs(jobs: list[EnhancementJob], images: list[Image], settings: Settings) -> list[str]:
    """The jobs whose image the network will enlarge (from the stored size and the tier; nothing decoded)."""
    config = engine_config(settings)
    sizes = {image.id: (image.width, image.height) for image in images}
    return [
        job.id
        for job in jobs
        if wants_super_resolution(*sizes[_kept(job.image_id)], TIERS[Tier(job.tier)].long_side, config)
    ]


def mark_started(session: Session, batch_id: str) -> None:
    """Record that the batch's workflow runs (only a still-CHARGED batch moves)."""
    session.exec(
        update(Batch)
        .where(col(Batch.id) == batch_id, col(Batch.status) == BatchStatus.CHARGED)
        .values(status=BatchStatus.RUNNING, started_at=utcnow())
    )


def close_unstarted(session: Session, batch_id: str, final: BatchStatus, reason: str) -> int:
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
    return sum(
        ledger.refund_job(session, job.id, job_status, reason, from_statuses=(JobStatus.PENDING,))
        for job in jobs_of(session, batch_id)
    )
