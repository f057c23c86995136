"""What a worker measures and logs around its activities, without touching them: an activity interceptor that
records the product metrics and logs each image and each batch's start and end with their ids."""

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from core.contracts import CloseJobResult, FinishBatchInput, ProcessJobInput, ProcessJobResult, SetBatchStatusInput
from core.vocabulary import Activity
from db.models import Batch, EnhancementJob
from telemetry import metrics

log = logging.getLogger("album_enhance.worker")


@dataclass(frozen=True)
class _JobFacts:
    tier: str
    user_id: str
    position: int


class ProductMetricsInterceptor(Interceptor):
    """Worker interceptor: one per worker, holding the engine used to look up a job's tier and a batch's charge."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Measured(next, self.engine)


class _Measured(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, engine: Engine) -> None:
        super().__init__(next)
        self.engine = engine

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        arg = input.args[0] if input.args else None
        if name == Activity.PROCESS_JOB and isinstance(arg, ProcessJobInput):
            return await self._process_job(input, arg)
        if name == Activity.SET_BATCH_STATUS and isinstance(arg, SetBatchStatusInput):
            result = await super().execute_activity(input)
            log.info("batch %s is %s", arg.batch_id, arg.status, extra=await self._batch_ids(arg.batch_id))
            return result
        result = await super().execute_activity(input)
        if isinstance(result, CloseJobResult) and result.tokens_refunded:
            metrics.TOKENS_REFUNDED.inc(result.tokens_refunded)
        if name == Activity.FINISH_BATCH and isinstance(arg, FinishBatchInput):
            await self._finished(arg)
        return result

    async def _process_job(self, input: ExecuteActivityInput, inp: ProcessJobInput) -> Any:
        info = activity.info()
        scheduled = info.current_attempt_scheduled_time or info.scheduled_time
        metrics.QUEUE_WAIT.observe(max(0.0, (info.started_time - scheduled).total_seconds()))
        facts = await asyncio.to_thread(self._job_facts, inp.job_id)
        ids = {"batch_id": info.workflow_id, "job_id": inp.job_id, "user_id": facts.user_id if facts else None}
        tier = facts.tier if facts else "unknown"
        if facts is not None and facts.position == 0 and info.attempt == 1:
            # Images run in order, so the first image's first attempt is the batch's start on the workers.
            log.info("batch %s started at %s", info.workflow_id, tier, extra=ids)
        started = time.monotonic()
        outcome = "ERROR"
        try:
            result = await super().execute_activity(input)
            outcome = result.status if isinstance(result, ProcessJobResult) else "UNKNOWN"
            return result
        except ApplicationError as exc:
            outcome = "FAILED" if exc.non_retryable else "ERROR"
            raise
        finally:
            seconds = time.monotonic() - started
            metrics.IMAGES.labels(tier=tier, outcome=outcome).inc()
            metrics.IMAGE_SECONDS.labels(tier=tier).observe(seconds)
            log.info("image %s: %s in %.2fs (attempt %d)", inp.job_id, outcome, seconds, info.attempt, extra=ids)

    async def _finished(self, inp: FinishBatchInput) -> None:
        batch = await asyncio.to_thread(self._batch, inp.batch_id)
        if batch is None:
            return
        seconds = (datetime.now(UTC) - batch.created_at).total_seconds()
        metrics.BATCH_SECONDS.labels(status=inp.status).observe(seconds)
        ids = {"batch_id": batch.id, "user_id": batch.user_id, "album_id": batch.album_id}
        log.info("batch %s finished %s after %.1fs", batch.id, inp.status, seconds, extra=ids)

    async def _batch_ids(self, batch_id: str) -> dict[str, str | None]:
        batch = await asyncio.to_thread(self._batch, batch_id)
        return {"batch_id": batch_id, "user_id": batch.user_id if batch else None}

    def _job_facts(self, job_id: str) -> _JobFacts | None:
        with Session(self.engine) as session:
            job = session.get(EnhancementJob, job_id)
            return _JobFacts(job.tier, job.user_id, job.position) if job is not None else None

    def _batch(self, batch_id: str) -> Batch | None:
        with Session(self.engine, expire_on_commit=False) as session:
            batch = session.get(Batch, batch_id)
            if batch is not None:
                session.expunge(batch)
            return batch
