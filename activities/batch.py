"""Activities of a batch: every side effect (database, storage, image processing) lives here.

The same methods run under Temporal (as registered activities) and in direct mode (called by the in-process
driver); only the JobControl differs: how progress is reported and how a cancel reaches an image in progress.
"""

import contextvars
import copy
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from core.contracts import (
    BatchCommands,
    CloseJobInput,
    CloseJobResult,
    FinishBatchInput,
    JobInterrupted,
    ProcessJobInput,
    ProcessJobResult,
    SetBatchStatusInput,
)
from core.vocabulary import (
    ACTIVE_BATCH_STATUSES,
    IN_FLIGHT_STATUSES,
    INVALID_IMAGE_ERROR,
    MAX_PROGRESS,
    MISSING_ORIGINAL_ERROR,
    RESULT_EXTENSIONS,
    TIERS,
    UNFINISHED_BATCH_STATUSES,
    Activity,
    OutputFormat,
    Tier,
)
from db import ledger, webhook_outbox
from db.models import Batch, BatchStatus, EnhancementJob, Image, JobStatus, utcnow
from db.session import session_scope
from imaging import (
    EngineConfig,
    EnhancedImage,
    InvalidImageError,
    Output,
    SuperResolutionProcesses,
    enhance_image,
    needs_super_resolution,
)
from storage.base import ObjectNotFound, Storage, enhanced_key

log = logging.getLogger(__name__)


Publish = Callable[[str], None]


class ProgressThrottle:
    """Passes on a job's step (e.g. "tile 3 of 12") only once the job has run `interval` seconds, and then at most
    once an interval and only when it changed: a quick image publishes nothing, a long one a line now and then."""

    def __init__(self, publish: Publish, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.publish = publish
        self.interval = interval
        self.clock = clock
        self._last_time = clock()
        self._last_step: str | None = None

    def offer(self, step: str) -> None:
        now = self.clock()
        if step != self._last_step and now - self._last_time >= self.interval:
            self._last_time, self._last_step = now, step
            self.publish(step)


class JobControl(Protocol):
    """How an image in progress reports its step and learns that it was cancelled."""

    def checkpoint(self, step: str | None = None) -> None:
        """Record the step; raise if the job was cancelled (the caller stops there, nothing committed)."""
        ...

    def working(self, publish: Publish) -> Any:
        """A context manager around the whole job; `publish` shows a step to users and operators."""
        ...


class TemporalJobControl:
    """Heartbeats every `interval` seconds from a helper thread while the job runs, so the server sees it alive
    however long a step takes and delivers a cancel promptly; checkpoints turn that cancel into CancelledError."""

    def __init__(self, interval: float, publish_interval: float) -> None:
        self.interval = interval
        self.publish_interval = publish_interval
        self._step = "starting"

    def checkpoint(self, step: str | None = None) -> None:
        if step is not None:
            self._step = step
        if activity.is_cancelled():
            raise CancelledError("Cancelled while enhancing")

    @contextmanager
    def working(self, publish: Publish) -> Iterator[None]:
        stop = threading.Event()
        context = contextvars.copy_context()  # the activity's context, so heartbeat() knows which activity
        throttle = ProgressThrottle(publish, self.publish_interval)

        def beat() -> None:
            while not stop.wait(self.interval):
                activity.heartbeat(self._step)
                throttle.offer(self._step)

        ticker = threading.Thread(target=context.run, args=(beat,), name="heartbeat", daemon=True)
        activity.heartbeat(self._step)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()


class DirectJobControl:
    """In-process: a cancel is an event the driver sets; checkpoints raise JobInterrupted once it is set."""

    def __init__(self, cancelled: threading.Event, publish_interval: float, on_step: Publish | None = None) -> None:
        self.cancelled = cancelled
        self.publish_interval = publish_interval
        self.on_step = on_step  # the in-process driver's own view of the step
        self._throttle: ProgressThrottle | None = None

    def checkpoint(self, step: str | None = None) -> None:
        if step is not None and self._throttle is not None:
            self._throttle.offer(step)
        if self.cancelled.is_set():
            raise JobInterrupted("Cancelled while enhancing")

    @contextmanager
    def working(self, publish: Publish) -> Iterator[None]:
        def publish_here_too(step: str) -> None:
            publish(step)
            if self.on_step is not None:
                self.on_step(step)

        self._throttle = ProgressThrottle(publish_here_too, self.publish_interval)
        try:
            yield
        finally:
            self._throttle = None


_current_control: contextvars.ContextVar[JobControl | None] = contextvars.ContextVar("job_control", default=None)


def checkpoint(step: str | None = None) -> None:
    """A point where the job in progress on this thread reports its step and stops if it was cancelled."""
    control = _current_control.get()
    if control is not None:
        control.checkpoint(step)


# Tells the batch's driver about a job's step: (batch id, job id, step).
StepListener = Callable[[str, str, str], None]
# Starts the webhook deliveries of committed events (never waits, never raises: see services.webhooks.WebhookStarts).
DeliveryStarter = Callable[[list[str]], None]


@dataclass(frozen=True)
class _Claim:
    status: JobStatus
    tier: str
    original_key: str
    width: int
    height: int
    attempt: int = 0  # this attempt's number (its result's key)


class BatchActivities:
    """Holds the database engine and storage the activities use (injected, so tests can wrap them)."""

    def __init__(
        self,
        engine: Engine,
        storage: Storage,
        max_image_pixels: int,
        heartbeat_interval: float = 0.5,
        progress_interval: float = 2.0,
        on_step: StepListener | None = None,
        engine_config: EngineConfig | None = None,
        engine_threads: int | None = None,
        sr_processes: SuperResolutionProcesses | None = None,
        on_webhooks: DeliveryStarter | None = None,
        links_base: str = "",
    ) -> None:
        """`engine_threads` bounds how many images are enhanced at once when more jobs than that may run at a time
        (a worker with spare activity slots); None when the caller's thread pool bounds it already.
        `sr_processes` runs the images the network enlarges in child processes (which bound their own number);
        without it they run on the calling thread like the others."""
        self.engine = engine
        self.storage = storage
        self.max_image_pixels = max_image_pixels
        self.heartbeat_interval = heartbeat_interval
        self.progress_interval = progress_interval
        self.on_step = on_step  # e.g. a signal to the job's workflow, so its progress query shows the step
        self.engine_config = engine_config  # None: the classic engine only
        self._engine_gate = threading.BoundedSemaphore(engine_threads) if engine_threads is not None else None
        self.sr_processes = sr_processes
        # Jobs and batches record their webhook events with their own change (db.webhook_outbox); once committed,
        # the deliveries are started here (a lost start is the reconciler's).
        self.on_webhooks = on_webhooks
        self.links_base = links_base

    def ungated(self) -> "BatchActivities":
        """These activities without the engine gate, for a pool whose every thread may enhance at once."""
        clone = copy.copy(self)
        clone._engine_gate = None
        return clone

    def with_sr_processes(self, sr_processes: SuperResolutionProcesses | None) -> "BatchActivities":
        """These activities enlarging with the network in the given child processes."""
        clone = copy.copy(self)
        clone.sr_processes = sr_processes
        return clone

    # Cancellation is cooperative (checkpoints), never an exception thrown into the thread at an arbitrary point,
    # which could land inside a database transaction.
    @activity.defn(name=Activity.PROCESS_JOB, no_thread_cancel_exception=True)
    def process_job(self, inp: ProcessJobInput) -> ProcessJobResult:
        """The Temporal activity: enhance_job with heartbeats and Temporal's cancellation."""
        control = TemporalJobControl(self.heartbeat_interval, self.progress_interval)
        return self.enhance_job(inp, control, activity.info().workflow_id or "")

    def enhance_job(self, inp: ProcessJobInput, control: JobControl, batch_id: str) -> ProcessJobResult:
        """Mark the job PROCESSING, enhance its image, store the JPEG and mark it COMPLETED (idempotent).

        A cancel noticed at a checkpoint leaves the job PROCESSING (the driver then closes and refunds it); once
        the result is being stored there are no more checkpoints, so a job either completes or is refunded.
        """
        token = _current_control.set(control)
        try:
            with control.working(functools.partial(self._publish_step, batch_id, inp.job_id)):
                return self._enhance(inp.job_id, _output(inp))
        finally:
            _current_control.reset(token)

    def enhance_in_process(
        self, inp: ProcessJobInput, batch_id: str, cancelled: threading.Event, on_step: Publish
    ) -> ProcessJobResult:
        """enhance_job for the in-process driver: a cancel is the driver's event, and it hears the steps too."""
        return self.enhance_job(inp, DirectJobControl(cancelled, self.progress_interval, on_step), batch_id)

    def batch_commands(self, batch_id: str) -> BatchCommands | None:
        """The commands on a batch's row, for the in-process driver (another API process records them there)."""
        with Session(self.engine) as session:
            batch = session.get(Batch, batch_id)
            return None if batch is None else BatchCommands(batch.status, batch.cancel_requested)

    def _publish_step(self, batch_id: str, job_id: str, step: str) -> None:
        """Show a long job's step on its row (the batch API) and to its driver; best effort, never fails the job."""
        try:
            with session_scope(self.engine) as session:
                session.exec(
                    update(EnhancementJob)
                    .where(col(EnhancementJob.id) == job_id, col(EnhancementJob.status) == JobStatus.PROCESSING)
                    .values(progress=step[:MAX_PROGRESS])
                )
            if self.on_step is not None:
                self.on_step(batch_id, job_id, step)
        except Exception:
            log.warning("could not publish the step of job %s", job_id, exc_info=True)

    def _enhance(self, job_id: str, output: Output) -> ProcessJobResult:
        claim = self._claim(job_id)
        if claim.status != JobStatus.PROCESSING:
            return self._result_of(job_id)
        checkpoint("reading the original")
        try:
            original = self.storage.get(claim.original_key)
        except ObjectNotFound as exc:
            raise ApplicationError(
                "The original image is missing from storage", type=MISSING_ORIGINAL_ERROR, non_retryable=True
            ) from exc
        long_side = TIERS[Tier(claim.tier)].long_side
        try:
            enhanced = self._run_engine(original, long_side, claim, output)
        except InvalidImageError as exc:
            raise ApplicationError(str(exc), type=INVALID_IMAGE_ERROR, non_retryable=True) from exc
        for note in enhanced.notes:  # metadata that could not be read or kept: the image is fine without it
            log.warning("job %s: metadata: %s", job_id, note)
        checkpoint("storing the result")  # the last point where a cancel stops this job
        key = enhanced_key(job_id, RESULT_EXTENSIONS[enhanced.format], claim.attempt)
        self.storage.put(key, enhanced.data)
        completed = self._complete(job_id, key, enhanced.width, enhanced.height, len(enhanced.data))
        if completed is None:
            # Closed while this attempt ran: cancelled or failed (its refund stands), or completed by an attempt
            # that overlapped this one (its result stands). This attempt's own object is the only one to drop.
            self.storage.delete(key)
            return self._result_of(job_id)
        return completed

    def _run_engine(self, original: bytes, long_side: int, claim: _Claim, output: Output) -> EnhancedImage:
        """The network's images in a child process, whose tiles this thread relays as checkpoints while it waits
        (so heartbeats and cancels never wait for a tile); the others on this thread, one of the engine's."""
        config = self.engine_config
        tiled = config is not None and needs_super_resolution(claim.width, claim.height, long_side, config)
        if tiled and self.sr_processes is not None:
            checkpoint("enhancing")
            return self.sr_processes.enhance(
                original,
                long_side,
                self.max_image_pixels,
                on_progress=_steps(tiled),
                on_wait=checkpoint,
                wait_interval=self.heartbeat_interval,
                output=output,
            )
        with self._engine_thread():
            checkpoint("enhancing")
            return enhance_image(
                original, long_side, self.max_image_pixels, config=config, on_progress=_steps(tiled), output=output
            )

    @contextmanager
    def _engine_thread(self) -> Iterator[None]:
        """Hold one of the engine's threads while enhancing. More jobs than engine threads may be in progress (the
        worker claims and reads the next images meanwhile); they wait here, still noticing a cancel."""
        if self._engine_gate is None:
            yield
            return
        while not self._engine_gate.acquire(timeout=self.heartbeat_interval):
            checkpoint("waiting for an engine thread")
        try:
            yield
        finally:
            self._engine_gate.release()

    @activity.defn(name=Activity.CLOSE_JOB)
    def close_job(self, inp: CloseJobInput) -> CloseJobResult:
        """Close an unfinished job as FAILED or CANCELLED and refund its cost exactly once."""
        deliveries: list[str] = []
        with session_scope(self.engine) as session:
            refunded = ledger.refund_job(session, inp.job_id, JobStatus(inp.status), inp.reason)
            status = session.get_one(EnhancementJob, inp.job_id).status
            if refunded:  # closed by this call: its event goes with it
                deliveries = webhook_outbox.record_job_event(session, inp.job_id, self.links_base)
        self._start_deliveries(deliveries)
        return CloseJobResult(job_id=inp.job_id, status=status, tokens_refunded=refunded)

    @activity.defn(name=Activity.SET_BATCH_STATUS)
    def set_batch_status(self, inp: SetBatchStatusInput) -> None:
        """Show a started batch as RUNNING or PAUSED (a finished batch keeps its final status)."""
        if inp.status not in ACTIVE_BATCH_STATUSES:
            raise ValueError(f"not a status of a started batch: {inp.status}")
        with session_scope(self.engine) as session:
            session.exec(
                update(Batch)
                .where(col(Batch.id) == inp.batch_id, col(Batch.status).in_(UNFINISHED_BATCH_STATUSES))
                .values(status=BatchStatus(inp.status), started_at=func.coalesce(Batch.started_at, utcnow()))
            )

    @activity.defn(name=Activity.FINISH_BATCH)
    def finish_batch(self, inp: FinishBatchInput) -> None:
        """Record the final status of a batch (and its webhook event, with it)."""
        deliveries: list[str] = []
        with session_scope(self.engine) as session:
            finished = session.exec(
                update(Batch)
                .where(col(Batch.id) == inp.batch_id, col(Batch.status).in_(UNFINISHED_BATCH_STATUSES))
                .values(status=BatchStatus(inp.status), finished_at=utcnow())
            )
            if finished.rowcount:
                deliveries = webhook_outbox.record_batch_event(session, inp.batch_id, self.links_base)
        self._start_deliveries(deliveries)

    def _start_deliveries(self, delivery_ids: list[str]) -> None:
        if delivery_ids and self.on_webhooks is not None:
            self.on_webhooks(delivery_ids)

    def _claim(self, job_id: str) -> _Claim:
        """Mark an unfinished job PROCESSING (one more attempt); a finished one is returned as it is."""
        with session_scope(self.engine) as session:
            claimed = session.exec(
                update(EnhancementJob)
                .where(col(EnhancementJob.id) == job_id, col(EnhancementJob.status).in_(IN_FLIGHT_STATUSES))
                .values(
                    status=JobStatus.PROCESSING,
                    attempts=EnhancementJob.attempts + 1,
                    started_at=func.coalesce(EnhancementJob.started_at, utcnow()),
                )
                .returning(col(EnhancementJob.tier), col(EnhancementJob.image_id), col(EnhancementJob.attempts))
            ).one_or_none()
            if claimed is None:
                job = session.get(EnhancementJob, job_id)
                if job is None:
                    raise ApplicationError(f"Job {job_id} not found", type="JobNotFound", non_retryable=True)
                return _Claim(job.status, job.tier, original_key="", width=0, height=0)
            tier, image_id, attempt = claimed
            original_key, width, height = session.exec(
                select(Image.original_key, Image.width, Image.height).where(col(Image.id) == image_id)
            ).one()
            return _Claim(JobStatus.PROCESSING, tier, original_key, width, height, attempt)

    def _complete(self, job_id: str, key: str, width: int, height: int, size: int) -> ProcessJobResult | None:
        """Mark a PROCESSING job COMPLETED and return its result; None if it was closed meanwhile."""
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
                    progress=None,
                    finished_at=utcnow(),
                )
                .returning(col(EnhancementJob.id))
            ).one_or_none()
            deliveries = webhook_outbox.record_job_event(session, job_id, self.links_base) if done else []
        if done is None:
            return None
        self._start_deliveries(deliveries)
        return ProcessJobResult(job_id=job_id, status=JobStatus.COMPLETED, width=width, height=height, size_bytes=size)

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
        return [self.process_job, self.close_job, self.set_batch_status, self.finish_batch]


def _output(inp: ProcessJobInput) -> Output:
    """What the batch's request asked the image to be written as (the metadata is always carried over)."""
    return Output(format=OutputFormat(inp.output_format).value, keep_location=inp.keep_location)


def _steps(tiled: bool) -> Callable[[int, int], None]:
    """The engine's progress as checkpoints, so a cancel lands between its steps (between tiles for SR, whose
    steps are the tiles and then the encoding)."""

    def report(done: int, total: int) -> None:
        tiles = total - 1
        if tiled and done < tiles:
            checkpoint(f"tile {done + 1} of {tiles}")
        else:
            checkpoint("encoding" if tiled else "enhancing")

    return report
