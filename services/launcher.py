"""Starting and cancelling batches: on Temporal, or in-process (direct mode) with the same activities."""

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, Protocol, TypeVar

from sqlmodel import Session
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.batch import BatchActivities
from db.models import Batch
from workflows.batch_enhance import BatchEnhanceWorkflow
from workflows.inputs import (
    BatchEnhanceInput,
    BatchResult,
    CloseJobInput,
    FinishBatchInput,
    ProcessJobInput,
    RetrySettings,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
A = TypeVar("A")


class BatchLauncher(Protocol):
    """Starts and cancels batch executions."""

    async def start(self, inp: BatchEnhanceInput) -> None: ...

    async def cancel(self, batch_id: str) -> None: ...

    async def aclose(self) -> None: ...


def search_attributes(inp: BatchEnhanceInput) -> TypedSearchAttributes:
    """The keyword attributes that make a batch easy to find in the Web UI."""
    values = {"AlbumId": inp.album_id, "UserId": inp.user_id, "EnhancementTier": inp.tier, "BatchStatus": "RUNNING"}
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(SearchAttributeKey.for_keyword(name), value) for name, value in values.items()
    ]
    return TypedSearchAttributes(pairs)


class TemporalLauncher:
    """Runs each batch as a BatchEnhanceWorkflow whose id is the batch id."""

    def __init__(self, client: Client, task_queue: str, start_timeout: float) -> None:
        self.client = client
        self.task_queue = task_queue
        self.start_timeout = start_timeout

    async def start(self, inp: BatchEnhanceInput) -> None:
        """Start the workflow; starting one that exists already is a no-op."""
        try:
            await asyncio.wait_for(
                self.client.start_workflow(
                    BatchEnhanceWorkflow.run,
                    inp,
                    id=inp.batch_id,
                    task_queue=self.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    search_attributes=search_attributes(inp),
                    static_summary=f"Enhance {len(inp.job_ids)} image(s) of album {inp.album_id} at {inp.tier}",
                    static_details=f"User {inp.user_id}, batch {inp.batch_id}",
                ),
                timeout=self.start_timeout,
            )
        except WorkflowAlreadyStartedError:
            log.info("batch %s was started before", inp.batch_id)

    async def cancel(self, batch_id: str) -> None:
        """Request cancellation; the workflow refunds what it had not processed."""
        handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(batch_id)
        await handle.cancel()

    async def aclose(self) -> None:
        """Nothing to release: the client belongs to the caller."""


async def _with_retry(call: Callable[[], Awaitable[T]], retry: RetrySettings, attempts: int | None) -> T:
    delay = retry.initial_interval_seconds
    attempt = 1
    while True:
        try:
            return await call()
        except ApplicationError as err:
            if err.non_retryable or (attempts is not None and attempt >= attempts):
                raise
        except Exception:
            if attempts is not None and attempt >= attempts:
                raise
            log.warning("direct batch step failed (attempt %s), retrying", attempt, exc_info=True)
        await asyncio.sleep(delay)
        delay = min(delay * 2, retry.max_interval_seconds)
        attempt += 1


class DirectLauncher:
    """Runs batches in this process as background tasks, with the workflow's retry, refund and cancel rules."""

    def __init__(self, activities: BatchActivities, executor: Executor) -> None:
        self.activities = activities
        self.executor = executor
        self.tasks: dict[str, asyncio.Task[BatchResult]] = {}

    async def start(self, inp: BatchEnhanceInput) -> None:
        """Start the batch in the background (fire and forget)."""
        if inp.batch_id in self.tasks:
            return
        task = asyncio.create_task(self.run(inp), name=f"batch-{inp.batch_id}")
        self.tasks[inp.batch_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(inp.batch_id, None))

    async def cancel(self, batch_id: str) -> None:
        """Cancellation is read from the batch row between images; nothing to do here."""

    async def aclose(self) -> None:
        """Stop running batches; unfinished ones resume at the next start."""
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _call(self, fn: Callable[[A], T], arg: A) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, arg)

    def _cancel_requested(self, batch_id: str) -> bool:
        with Session(self.activities.engine) as session:
            return session.get_one(Batch, batch_id).cancel_requested

    async def run(self, inp: BatchEnhanceInput) -> BatchResult:
        """Process the batch's images one after another."""
        counts = {"COMPLETED": 0, "FAILED": 0, "CANCELLED": 0}
        refunded = 0

        async def close(job_id: str, status: str, reason: str) -> None:
            nonlocal refunded
            closing = functools.partial(self._call, self.activities.close_job, CloseJobInput(job_id, status, reason))
            result = await _with_retry(closing, inp.retry, None)
            refunded += result.tokens_refunded
            counts[result.status] = counts.get(result.status, 0) + 1

        final = "COMPLETED"
        for index, job_id in enumerate(inp.job_ids):
            checking = functools.partial(self._call, self._cancel_requested, inp.batch_id)
            if await _with_retry(checking, inp.retry, None):
                for remaining in inp.job_ids[index:]:
                    await close(remaining, "CANCELLED", "Batch cancelled")
                final = "CANCELLED"
                break
            try:
                processing = functools.partial(self._call, self.activities.process_job, ProcessJobInput(job_id))
                outcome = await _with_retry(processing, inp.retry, inp.retry.max_attempts)
                counts[outcome.status] = counts.get(outcome.status, 0) + 1
            except Exception as err:
                await close(job_id, "FAILED", f"Enhancement failed: {err}"[:1000])
        finishing = functools.partial(self._call, self.activities.finish_batch, FinishBatchInput(inp.batch_id, final))
        await _with_retry(finishing, inp.retry, None)
        return BatchResult(inp.batch_id, final, counts["COMPLETED"], counts["FAILED"], counts["CANCELLED"], refunded)
