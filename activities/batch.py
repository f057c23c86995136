"""Activities of a batch: every side effect (database, storage, image processing) lives here."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import ledger
from db.models import Batch, BatchStatus, EnhancementJob, Image, JobStatus, utcnow
from db.session import session_scope
from imaging import InvalidImageError, enhance_image
from imaging.enhance import TIER_SIZES
from storage.base import ObjectNotFound, Storage, enhanced_key
from workflows.inputs import (
    INVALID_IMAGE_ERROR,
    MISSING_ORIGINAL_ERROR,
    CloseJobInput,
    CloseJobResult,
    FinishBatchInput,
    ProcessJobInput,
    ProcessJobResult,
)


def heartbeat() -> None:
    """Heartbeat when running under Temporal; a no-op in direct mode."""
    if activity.in_activity():
        activity.heartbeat()


@dataclass(frozen=True)
class _Claim:
    status: JobStatus
    tier: str
    original_key: str


class BatchActivities:
    """Holds the database engine and storage the activities use (injected, so tests can wrap them)."""

    def __init__(self, engine: Engine, storage: Storage, max_image_pixels: int) -> None:
        self.engine = engine
        self.storage = storage
        self.max_image_pixels = max_image_pixels

    @activity.defn(name="process_enhancement_job")
    def process_job(self, inp: ProcessJobInput) -> ProcessJobResult:
        """Mark the job PROCESSING, enhance its image, store the JPEG and mark it COMPLETED (idempotent)."""
        claim = self._claim(inp.job_id)
        if claim.status != JobStatus.PROCESSING:
            return self._result_of(inp.job_id)
        heartbeat()
        try:
            original = self.storage.get(claim.original_key)
        except ObjectNotFound as exc:
            raise ApplicationError(
                "The original image is missing from storage", type=MISSING_ORIGINAL_ERROR, non_retryable=True
            ) from exc
        try:
            enhanced = enhance_image(original, TIER_SIZES[claim.tier], self.max_image_pixels)
        except InvalidImageError as exc:
            raise ApplicationError(str(exc), type=INVALID_IMAGE_ERROR, non_retryable=True) from exc
        heartbeat()
        key = enhanced_key(inp.job_id)
        self.storage.put(key, enhanced.data)
        if not self._complete(inp.job_id, key, enhanced.width, enhanced.height, len(enhanced.data)):
            # Closed (cancelled or failed) while this attempt ran: its refund stands, so drop the file.
            self.storage.delete(key)
        return self._result_of(inp.job_id)

    @activity.defn(name="close_enhancement_job")
    def close_job(self, inp: CloseJobInput) -> CloseJobResult:
        """Close an unfinished job as FAILED or CANCELLED and refund its cost exactly once."""
        with session_scope(self.engine) as session:
            refunded = ledger.refund_job(session, inp.job_id, JobStatus(inp.status), inp.reason)
            status = session.get_one(EnhancementJob, inp.job_id).status
        return CloseJobResult(job_id=inp.job_id, status=status, tokens_refunded=refunded)

    @activity.defn(name="finish_batch")
    def finish_batch(self, inp: FinishBatchInput) -> None:
        """Record the final status of a batch."""
        with session_scope(self.engine) as session:
            session.exec(
                update(Batch)
                .where(
                    col(Batch.id) == inp.batch_id,
                    col(Batch.status).in_([BatchStatus.CHARGED, BatchStatus.RUNNING]),
                )
                .values(status=BatchStatus(inp.status), finished_at=utcnow())
            )

    def _claim(self, job_id: str) -> _Claim:
        with session_scope(self.engine) as session:
            job = session.get(EnhancementJob, job_id, with_for_update=True)
            if job is None:
                raise ApplicationError(f"Job {job_id} not found", type="JobNotFound", non_retryable=True)
            image = session.get_one(Image, job.image_id)
            if job.status in (JobStatus.PENDING, JobStatus.PROCESSING):
                job.status = JobStatus.PROCESSING
                job.attempts += 1
                job.started_at = job.started_at or utcnow()
                session.add(job)
            return _Claim(status=job.status, tier=job.tier, original_key=image.original_key)

    def _complete(self, job_id: str, key: str, width: int, height: int, size: int) -> bool:
        with session_scope(self.engine) as session:
            done = session.exec(
                update(EnhancementJob)
                .where(col(EnhancementJob.id) == job_id, col(EnhancementJob.status) == JobStatus.PROCESSING)
                .values(
                    status=JobStatus.COMPLETED,
                    enhanced_key=key,
                    enhanced_width=width,
                    enhanced_height=height,
                    enhanced_size_bytes=size,
                    error_message=None,
                    finished_at=utcnow(),
                )
            )
            return bool(done.rowcount)

    def _result_of(self, job_id: str) -> ProcessJobResult:
        with Session(self.engine) as session:
            job = session.get_one(EnhancementJob, job_id)
            return ProcessJobResult(
                job_id=job.id,
                status=job.status,
                width=job.enhanced_width,
                height=job.enhanced_height,
                size_bytes=job.enhanced_size_bytes,
            )

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.process_job, self.close_job, self.finish_batch]
