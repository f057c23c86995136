"""Webhook events, recorded in the transaction of the change they report (an outbox): a batch that finishes, a job
that completes or fails, writes its message and one delivery per subscribed endpoint together with that change, so
an event is neither lost (a crash right after the change) nor sent for a change that was rolled back. Sending is
not done here: the caller hands the returned delivery ids to the delivery driver once committed, and the
reconciler starts any delivery that was recorded but never started."""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlmodel import Session, col, or_, select

from core.vocabulary import BATCH_EVENTS, BatchStatus, JobStatus, WebhookEvent
from db.models import Batch, EnhancementJob, WebhookDelivery, WebhookEndpoint, WebhookMessage, utcnow


def message_id(event_type: str, subject_id: str) -> str:
    """The `webhook-id` of an event: derived from what happened, so recording it twice is recording it once."""
    return "msg_" + hashlib.sha256(f"{event_type}:{subject_id}".encode()).hexdigest()[:32]


def message_body(event_type: str, data: dict[str, Any]) -> str:
    """The exact bytes every attempt sends (Standard Webhooks' payload: type, timestamp, data)."""
    payload = {"type": event_type, "timestamp": utcnow().isoformat().replace("+00:00", "Z"), "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=False)


def subscribed(session: Session, user_id: str, event_type: str, batch_id: str | None) -> list[WebhookEndpoint]:
    """The user's enabled endpoints that take this event: their own, and the callbackUrl of this batch."""
    endpoints = session.exec(
        select(WebhookEndpoint).where(
            col(WebhookEndpoint.user_id) == user_id,
            col(WebhookEndpoint.enabled),
            or_(col(WebhookEndpoint.batch_id).is_(None), col(WebhookEndpoint.batch_id) == batch_id),
        )
    ).all()
    return [endpoint for endpoint in endpoints if event_type in endpoint.events.split()]


def record(
    session: Session,
    user_id: str,
    event_type: str,
    message: str,
    build: Callable[[], dict[str, Any]],
    batch_id: str | None = None,
) -> list[str]:
    """Record the event `message` (its id) for every subscribed endpoint; `build()` makes its data, only when some
    endpoint takes it. Returns the new deliveries' ids."""
    endpoints = subscribed(session, user_id, event_type, batch_id)
    if not endpoints:
        return []
    if session.get(WebhookMessage, message) is None:
        session.add(
            WebhookMessage(id=message, user_id=user_id, event_type=event_type, body=message_body(event_type, build()))
        )
        session.flush()  # before its deliveries, which refer to it
    deliveries = [WebhookDelivery(message_id=message, endpoint_id=endpoint.id) for endpoint in endpoints]
    session.add_all(deliveries)
    session.flush()
    return [delivery.id for delivery in deliveries]


def record_batch_event(session: Session, batch_id: str, base_url: str) -> list[str]:
    """The batch's final event (completed, cancelled or failed), if it has ended."""
    batch = session.get_one(Batch, batch_id)
    event = BATCH_EVENTS.get(BatchStatus(batch.status))
    if event is None:
        return []
    return record(
        session,
        batch.user_id,
        event,
        message_id(event, batch.id),
        lambda: batch_data(session, batch, base_url),
        batch_id=batch.id,
    )


def record_job_event(session: Session, job_id: str, base_url: str) -> list[str]:
    """A job's event, once it has completed or failed (a cancelled job sends none: its batch's event covers it)."""
    job = session.get_one(EnhancementJob, job_id)
    if job.status == JobStatus.COMPLETED:
        event = WebhookEvent.JOB_COMPLETED
    elif job.status == JobStatus.FAILED:
        event = WebhookEvent.JOB_FAILED
    else:
        return []
    return record(
        session, job.user_id, event, message_id(event, job.id), lambda: job_data(job, base_url), batch_id=job.batch_id
    )


def batch_data(session: Session, batch: Batch, base_url: str) -> dict[str, Any]:
    jobs = session.exec(
        select(EnhancementJob).where(col(EnhancementJob.batch_id) == batch.id).order_by(col(EnhancementJob.position))
    ).all()

    def count(status: JobStatus) -> int:
        return sum(1 for job in jobs if job.status == status)

    links = {"batch": f"{base_url}/api/batches/{batch.id}"}
    if batch.album_id is not None and count(JobStatus.COMPLETED):
        links["results"] = f"{base_url}/api/albums/{batch.album_id}/results.zip"
    return {
        "batchId": batch.id,
        "albumId": batch.album_id,
        "status": batch.status,
        "tier": batch.tier,
        "totalImages": len(jobs),
        "completed": count(JobStatus.COMPLETED),
        "failed": count(JobStatus.FAILED),
        "cancelled": count(JobStatus.CANCELLED),
        "tokensCharged": batch.tokens_charged,
        "tokensRefunded": sum(job.tokens_refunded for job in jobs),
        "links": links,
        "jobs": [_job_summary(job, base_url) for job in jobs],
    }


def job_data(job: EnhancementJob, base_url: str) -> dict[str, Any]:
    return {
        **_job_summary(job, base_url),
        "batchId": job.batch_id,
        "tier": job.tier,
        "tokensCharged": job.tokens_cost,
        "tokensRefunded": job.tokens_refunded,
        "width": job.enhanced_width,
        "height": job.enhanced_height,
        "sizeBytes": job.enhanced_size_bytes,
        "error": job.error_message,
    }


def _job_summary(job: EnhancementJob, base_url: str) -> dict[str, Any]:
    links = {"job": f"{base_url}/api/jobs/{job.id}"}
    if job.status == JobStatus.COMPLETED:
        links["result"] = f"{base_url}/api/jobs/{job.id}/result"
    return {"jobId": job.id, "imageId": job.image_id, "status": job.status, "links": links}
