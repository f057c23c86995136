"""The owner's commands on a batch: cancel, pause and resume. Each records the request on the batch row (so it is
visible at once and survives a lost delivery), commits, then delivers it to the batch's driver: a use case of
steps, each one transaction begun and committed here."""

import logging
from collections.abc import Callable

from sqlalchemy import update
from sqlmodel import Session, col

from core.errors import Conflict, ServiceUnavailable
from core.vocabulary import ACTIVE_BATCH_STATUSES, FINAL_BATCH_STATUSES, UNFINISHED_BATCH_STATUSES, BatchStatus
from db.models import Batch
from db.session import transaction
from services.batches import close_unstarted

log = logging.getLogger(__name__)

Deliver = Callable[[], None]


def cancel(session: Session, batch_id: str, deliver: Deliver, links_base: str = "") -> BatchStatus:
    """Cancel at any moment before the end; cancelling a cancelled batch again changes nothing. `links_base`
    starts the links of the webhook event a batch closed here records."""
    with transaction(session):
        flagged = session.exec(
            update(Batch)
            .where(col(Batch.id) == batch_id, col(Batch.status).in_(UNFINISHED_BATCH_STATUSES))
            .values(cancel_requested=True)
        )
        if flagged.rowcount:
            # Not known to have started: close it here; a workflow that did start unseen still gets the delivery.
            close_unstarted(session, batch_id, BatchStatus.CANCELLED, "Batch cancelled", links_base)
    if not flagged.rowcount:
        return _already_final(session, batch_id)
    try:
        deliver()
    except Exception as exc:
        status = _status(session, batch_id)
        if status in ACTIVE_BATCH_STATUSES:
            log.warning("cancel of batch %s was not delivered", batch_id, exc_info=True)
            raise ServiceUnavailable("Could not reach the workflow engine; try again") from exc
        if status in (BatchStatus.COMPLETED, BatchStatus.FAILED):
            raise Conflict(f"Batch already finished ({status})") from exc
    return _status(session, batch_id)


def pause(session: Session, batch_id: str, deliver: Deliver) -> BatchStatus:
    """Hold the batch before its next image; the row says PAUSED from now on."""
    return _switch(session, batch_id, deliver, BatchStatus.RUNNING, BatchStatus.PAUSED)


def resume(session: Session, batch_id: str, deliver: Deliver) -> BatchStatus:
    """Continue a paused batch; resuming a running one changes nothing."""
    return _switch(session, batch_id, deliver, BatchStatus.PAUSED, BatchStatus.RUNNING)


def _switch(
    session: Session, batch_id: str, deliver: Deliver, from_status: BatchStatus, to_status: BatchStatus
) -> BatchStatus:
    """Move a started batch between RUNNING and PAUSED: on its row, then to its driver (undone if undelivered)."""
    if _commandable(session, batch_id) == to_status:
        return to_status
    with transaction(session):
        _move(session, batch_id, from_status, to_status)
    try:
        deliver()
    except Exception as exc:
        with transaction(session):
            _move(session, batch_id, to_status, from_status)
        status = _status(session, batch_id)
        if status in FINAL_BATCH_STATUSES:
            raise Conflict(f"Batch already finished ({status})") from exc
        log.warning("command to batch %s was not delivered", batch_id, exc_info=True)
        raise ServiceUnavailable("Could not reach the workflow engine; try again") from exc
    return _status(session, batch_id)


def _commandable(session: Session, batch_id: str) -> BatchStatus:
    batch = session.get_one(Batch, batch_id)
    session.refresh(batch)
    if batch.status in FINAL_BATCH_STATUSES:
        raise Conflict(f"Batch already finished ({batch.status})")
    if batch.cancel_requested:
        raise Conflict("Batch is being cancelled")
    if batch.status == BatchStatus.CHARGED:
        raise Conflict("Batch has not started yet; try again in a moment")
    return batch.status


def _move(session: Session, batch_id: str, from_status: BatchStatus, to_status: BatchStatus) -> None:
    session.exec(
        update(Batch).where(col(Batch.id) == batch_id, col(Batch.status) == from_status).values(status=to_status)
    )


def _already_final(session: Session, batch_id: str) -> BatchStatus:
    status = _status(session, batch_id)
    if status != BatchStatus.CANCELLED:
        raise Conflict(f"Batch already finished ({status})")
    return status


def _status(session: Session, batch_id: str) -> BatchStatus:
    batch = session.get_one(Batch, batch_id)
    session.refresh(batch)
    return batch.status
