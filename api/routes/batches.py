"""Batches: status from the database, and the owner's commands (cancel, pause, resume)."""

import logging
from typing import Any

import anyio.from_thread
from fastapi import APIRouter, status

from api.deps import LauncherDep, OwnedBatch, SessionDep, SettingsDep
from api.schemas import BatchCommandOut, BatchOut, ErrorOut, JobOut
from services import batch_commands
from services.batches import count_jobs, jobs_of
from services.webhooks import links_base

log = logging.getLogger(__name__)
router = APIRouter(prefix="/batches", tags=["batches"])

COMMAND_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 404, 409, 503)}


@router.get("/{batchId}", response_model=BatchOut, responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}})
def read_batch(batch: OwnedBatch, session: SessionDep) -> BatchOut:
    """A batch's status (CHARGED, RUNNING, PAUSED, COMPLETED, CANCELLED or FAILED) and counts, with its jobs."""
    jobs = jobs_of(session, batch.id)
    counts = count_jobs(jobs)
    return BatchOut(
        batch_id=batch.id,
        album_id=batch.album_id,
        tier=batch.tier,
        status=batch.status,
        total_images=counts.total,
        completed=counts.completed,
        failed=counts.failed,
        cancelled=counts.cancelled,
        pending=counts.pending,
        tokens_charged=batch.tokens_charged,
        tokens_refunded=counts.tokens_refunded,
        created_at=batch.created_at,
        output_format=batch.output_format,
        keep_location=batch.keep_location,
        jobs=[JobOut.model_validate(job) for job in jobs],
    )


@router.post(
    "/{batchId}/cancel", response_model=BatchCommandOut, status_code=status.HTTP_202_ACCEPTED, responses=COMMAND_ERRORS
)
def cancel_batch(
    batch: OwnedBatch, session: SessionDep, launcher: LauncherDep, settings: SettingsDep
) -> BatchCommandOut:
    """Cancel a batch at any moment: the image in progress stops at its next checkpoint; every image not enhanced
    is cancelled and refunded, once. A finished batch answers 409; a cancelled one, 202 again."""
    final = batch_commands.cancel(
        session, batch.id, lambda: anyio.from_thread.run(launcher.cancel, batch.id), links_base(settings)
    )
    return BatchCommandOut(batch_id=batch.id, status=final)


@router.post(
    "/{batchId}/pause", response_model=BatchCommandOut, status_code=status.HTTP_202_ACCEPTED, responses=COMMAND_ERRORS
)
def pause_batch(batch: OwnedBatch, session: SessionDep, launcher: LauncherDep) -> BatchCommandOut:
    """Hold a running batch before its next image (the image in progress finishes); the batch shows PAUSED."""
    final = batch_commands.pause(session, batch.id, lambda: anyio.from_thread.run(launcher.pause, batch.id))
    return BatchCommandOut(batch_id=batch.id, status=final)


@router.post(
    "/{batchId}/resume", response_model=BatchCommandOut, status_code=status.HTTP_202_ACCEPTED, responses=COMMAND_ERRORS
)
def resume_batch(batch: OwnedBatch, session: SessionDep, launcher: LauncherDep) -> BatchCommandOut:
    """Continue a paused batch."""
    final = batch_commands.resume(session, batch.id, lambda: anyio.from_thread.run(launcher.resume, batch.id))
    return BatchCommandOut(batch_id=batch.id, status=final)
