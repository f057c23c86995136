"""A batch's progress as Server-Sent Events, read from the database (so it works in both execution modes).

The stream is stateless on the server: each event's id encodes everything the client knows after it (the batch
status and every job's status, e.g. `R.CCWP`). A client that reconnects with `Last-Event-ID` gets exactly the
changes since that state, nothing twice and nothing missed, whichever server process answers.
"""

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

import anyio
from sqlalchemy import Engine
from sqlmodel import Session

from core.vocabulary import FINAL_BATCH_STATUSES, IN_FLIGHT_STATUSES, JobStatus
from db.models import Batch, utcnow
from services.batches import count_jobs, jobs_of

log = logging.getLogger(__name__)

# One letter per status keeps the id short; "-" is a state the client has not been told yet.
_BATCH_CODES = {"CHARGED": "H", "RUNNING": "R", "PAUSED": "P", "COMPLETED": "C", "CANCELLED": "X", "FAILED": "F"}
_CANCELLING = "K"  # asked to cancel and not ended yet (whatever tab, process or client asked)
_JOB_CODES = {"PENDING": "P", "PROCESSING": "W", "COMPLETED": "C", "FAILED": "F", "CANCELLED": "X"}
_NOT_TOLD = "-"
_OTHER = "?"  # a status added after this table was written


@dataclass(frozen=True)
class JobState:
    id: str
    image_id: str | None
    position: int
    status: str
    tokens_refunded: int
    error_message: str | None
    step: str | None = None  # where an image in progress is, e.g. "tile 3 of 12" (None once it left PROCESSING)
    started_at: datetime | None = None

    def as_event(self) -> dict[str, object]:
        return {
            "jobId": self.id,
            "imageId": self.image_id,
            "position": self.position,
            "status": self.status,
            "tokensRefunded": self.tokens_refunded,
            "errorMessage": self.error_message,
        }

    def as_step_event(self, read_at: datetime) -> dict[str, object]:
        # The elapsed time on the server's clock, so a client can estimate what is left without trusting its own.
        elapsed = None if self.started_at is None else round(max((read_at - self.started_at).total_seconds(), 0), 1)
        return {
            "jobId": self.id,
            "imageId": self.image_id,
            "position": self.position,
            "step": self.step,
            "elapsedSeconds": elapsed,
        }


@dataclass(frozen=True)
class BatchSnapshot:
    id: str
    status: str
    tokens_charged: int
    jobs: tuple[JobState, ...]
    cancel_requested: bool = False
    read_at: datetime = field(default_factory=utcnow)

    @property
    def code(self) -> str:
        """The batch's letter in event ids: its status, or "cancelling" between a cancel and the end."""
        if self.cancel_requested and self.status not in FINAL_BATCH_STATUSES:
            return _CANCELLING
        return _BATCH_CODES.get(self.status, _OTHER)

    @property
    def finished(self) -> bool:
        """The batch ended and no job can change any more: the stream may close."""
        return self.status in FINAL_BATCH_STATUSES and not any(job.status in IN_FLIGHT_STATUSES for job in self.jobs)

    def as_event(self) -> dict[str, object]:
        counts = count_jobs(self.jobs)
        return {
            "batchId": self.id,
            "status": self.status,
            "totalImages": counts.total,
            "completed": counts.completed,
            "failed": counts.failed,
            "cancelled": counts.cancelled,
            "pending": counts.pending,
            "tokensCharged": self.tokens_charged,
            "tokensRefunded": counts.tokens_refunded,
            "cancelRequested": self.cancel_requested,
        }


@dataclass(frozen=True)
class Event:
    id: str
    name: str
    data: dict[str, object]

    def encode(self) -> bytes:
        return f"id: {self.id}\nevent: {self.name}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n".encode()


def snapshot(session: Session, batch_id: str) -> BatchSnapshot:
    """The batch and its jobs as they are now."""
    batch = session.get_one(Batch, batch_id)
    jobs = tuple(
        JobState(
            job.id,
            job.image_id,
            job.position,
            job.status,
            job.tokens_refunded,
            job.error_message,
            step=job.progress if job.status == JobStatus.PROCESSING else None,
            started_at=job.started_at,
        )
        for job in jobs_of(session, batch_id)
    )
    return BatchSnapshot(batch.id, batch.status, batch.tokens_charged, jobs, batch.cancel_requested)


def _cursor(batch_code: str, job_codes: list[str]) -> str:
    return f"{batch_code}.{''.join(job_codes)}"


def parse_cursor(last_event_id: str | None, job_count: int) -> tuple[str, list[str]]:
    """The state a client knows from its Last-Event-ID; anything unreadable means it knows nothing."""
    unknown = (_NOT_TOLD, [_NOT_TOLD] * job_count)
    if not last_event_id:
        return unknown
    batch_code, dot, jobs = last_event_id.partition(".")
    if not dot or len(batch_code) != 1 or len(jobs) != job_count:
        return unknown
    return batch_code, list(jobs)


def changes_since(known: tuple[str, list[str]], now: BatchSnapshot) -> list[Event]:
    """The events that take a client from what it knows to `now`: changed jobs, then the batch if anything moved."""
    batch_code, job_codes = known[0], list(known[1])
    events = []
    for index, job in enumerate(now.jobs):
        code = _JOB_CODES.get(job.status, _OTHER)
        if code != job_codes[index]:
            job_codes[index] = code
            events.append(Event(_cursor(batch_code, job_codes), "job", job.as_event()))
    code = now.code
    if events or code != batch_code:
        events.append(Event(_cursor(code, job_codes), "batch", now.as_event()))
    return events


def steps_since(told: dict[str, str], now: BatchSnapshot, known: tuple[str, list[str]]) -> list[Event]:
    """A `step` event for each image in progress whose step this connection has not sent yet; `told` (job id to
    step) is updated. Steps are not part of the cursor: they are momentary, and a client that reconnects is simply
    told the current ones again. Their id is the cursor the client already has, so resuming after one is exact."""
    events = []
    for job in now.jobs:
        if job.step is not None and told.get(job.id) != job.step:
            told[job.id] = job.step
            events.append(Event(_cursor(*known), "step", job.as_step_event(now.read_at)))
    return events


def cursor_of(now: BatchSnapshot) -> str:
    """The id of the last event that describes `now` completely."""
    return _cursor(now.code, [_JOB_CODES.get(job.status, _OTHER) for job in now.jobs])


def end_event(now: BatchSnapshot) -> Event:
    """The last event of a stream: the batch ended."""
    return Event(cursor_of(now), "end", {"batchId": now.id, "status": now.status})


def _read(engine: Engine, batch_id: str) -> BatchSnapshot:
    with Session(engine) as session:
        return snapshot(session, batch_id)


async def _read_or_none(engine: Engine, batch_id: str, reads: anyio.CapacityLimiter) -> BatchSnapshot | None:
    try:
        # `reads` first: however many streams are open, they take at most that many of the threads of the default
        # limiter (the same threads, so connections, as sync routes, never one more), and short requests keep
        # the rest.
        async with reads:
            return await anyio.to_thread.run_sync(_read, engine, batch_id)
    except Exception:
        log.warning("event stream of batch %s stopped: the database could not be read", batch_id, exc_info=True)
        return None


async def event_stream(
    engine: Engine,
    batch_id: str,
    last_event_id: str | None,
    poll_seconds: float,
    keepalive_seconds: float,
    max_seconds: float,
    reads: anyio.CapacityLimiter,
) -> AsyncIterator[bytes]:
    """The encoded stream: what changed since `last_event_id`, then every change (and every new step of an image
    in progress) as the database shows it, then an `end` event once the batch is over (a client that reconnects
    after that gets `end` at once). If the database fails, or the stream has lasted `max_seconds` (a paused batch
    may wait for days), the stream just ends: the client reconnects with its Last-Event-ID and misses nothing."""
    yield RETRY_HINT
    closes_at = time.monotonic() + max_seconds
    now = await _read_or_none(engine, batch_id, reads)
    if now is None:
        return
    known = parse_cursor(last_event_id, len(now.jobs))
    told_steps: dict[str, str] = {}
    quiet = 0.0
    while True:
        events = changes_since(known, now)
        if events:
            known = parse_cursor(events[-1].id, len(now.jobs))
        events += steps_since(told_steps, now, known)
        for event in events:
            yield event.encode()
        if events:
            quiet = 0.0
        if now.finished:
            yield end_event(now).encode()
            return
        if quiet >= keepalive_seconds:
            yield KEEPALIVE
            quiet = 0.0
        if time.monotonic() >= closes_at:
            return
        await anyio.sleep(poll_seconds)
        quiet += poll_seconds
        now = await _read_or_none(engine, batch_id, reads)
        if now is None:
            return


# A comment line keeps proxies from closing an idle stream; clients ignore it.
KEEPALIVE = b": keep-alive\n\n"
# How long a client waits before reconnecting after a dropped connection.
RETRY_HINT = b"retry: 2000\n\n"
