"""Batches: status from the database, and cancellation."""

import logging

import anyio.from_thread
from fastapi import APIRouter, status
from sqlalchemy import update
from sqlmodel import col

from api.deps import LauncherDep, OwnedBatch, SessionDep
from api.schemas import BatchOut, CancelOut, ErrorOut, JobOut
from core.errors import Conflict, ServiceUnavailable
from db.models import Batch, BatchStatus, JobStatus
from services.batches import close_unstarted, jobs_of

log = logging.getLogger(__name__)
router = APIRouter(prefix="/batches", tags=["batches"])


@router.get("/{batchId}", response_model=BatchOut, responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}})
def read_batch(batch: OwnedBatch, session: SessionDep) -> BatchOut:
    """A batch's status and counts, with its jobs."""
    jobs = jobs_of(session, batch.id)
    count = {s: sum(1 for job in jobs if job.status == s) for s in JobStatus}
    return BatchOut(
        batch_id=batch.id,
        album_id=batch.album_id,
        tier=batch.tier,
        status=batch.status,
        total_images=len(jobs),
        completed=count[JobStatus.COMPLETED],
        failed=count[JobStatus.FAILED],
        cancelled=count[JobStatus.CANCELLED],
        pending=count[JobStatus.PENDING] + count[JobStatus.PROCESSING],
        tokens_charged=batch.tokens_charged,
        tokens_refunded=sum(job.tokens_refunded for job in jobs),
        created_at=batch.created_at,
        jobs=[JobOut.model_validate(job) for job in jobs],
    )


@router.post(
    "/{batchId}/cancel",
    response_model=CancelOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={code: {"model": ErrorOut} for code in (401, 404, 409, 503)},
)
def cancel_batch(batch: OwnedBatch, session: SessionDep, launcher: LauncherDep) -> CancelOut:
    """Cancel a batch: images not yet enhanced are cancelled and refunded."""
    if batch.status in (BatchStatus.COMPLETED, BatchStatus.FAILED):
        raise Conflict(f"Batch already finished ({batch.status})")
    if batch.status == BatchStatus.CANCELLED:
        return CancelOut(batch_id=batch.id, status=batch.status)
    session.exec(update(Batch).where(col(Batch.id) == batch.id).values(cancel_requested=True))
    close_unstarted(session, batch.id, BatchStatus.CANCELLED, "Batch cancelled")
    session.commit()
    try:
        # Also for a batch never marked started: its workflow may exist all the same.
        anyio.from_thread.run(launcher.cancel, batch.id)
    except Exception as exc:
        session.refresh(batch)
        if batch.status == BatchStatus.RUNNING:
            log.warning("cancel request for batch %s was not delivered", batch.id, exc_info=True)
            raise ServiceUnavailable("Could not reach the workflow engine; try again") from exc
    session.refresh(batch)
    return CancelOut(batch_id=batch.id, status=batch.status)
