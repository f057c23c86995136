"""Starting and commanding batches: on Temporal, or in-process (workflows.direct) with the same activities."""

import asyncio
import logging
from concurrent.futures import Future
from typing import Any, Protocol

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import (
    Priority,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.contracts import BatchEnhanceInput, JobStep
from core.vocabulary import BatchStatus, SearchAttribute, Signal
from workflows.batch_enhance import BatchEnhanceWorkflow

log = logging.getLogger(__name__)


class StepSignals:
    """Forwards a long job's step to its workflow as the job_step signal; callable from any thread (the activity's
    heartbeat thread), never waits, and a lost step is only logged: the next one follows."""

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop

    def __call__(self, batch_id: str, job_id: str, step: str) -> None:
        sent = asyncio.run_coroutine_threadsafe(self._send(batch_id, JobStep(job_id, step)), self.loop)
        sent.add_done_callback(_log_failure)

    async def _send(self, batch_id: str, update: JobStep) -> None:
        await self.client.get_workflow_handle(batch_id).signal(Signal.JOB_STEP, update)


def _log_failure(sent: Future[None]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.warning("could not send a job step", exc_info=sent.exception())


class BatchLauncher(Protocol):
    """Starts batch executions and delivers the owner's commands to them."""

    async def start(self, inp: BatchEnhanceInput) -> None: ...

    async def cancel(self, batch_id: str) -> None: ...

    async def pause(self, batch_id: str) -> None: ...

    async def resume(self, batch_id: str) -> None: ...

    async def aclose(self) -> None: ...


def search_attributes(inp: BatchEnhanceInput) -> TypedSearchAttributes:
    """The keyword attributes that make a batch easy to find in the Web UI."""
    values = {
        SearchAttribute.ALBUM_ID: inp.album_id,
        SearchAttribute.USER_ID: inp.user_id,
        SearchAttribute.ENHANCEMENT_TIER: inp.tier,
        SearchAttribute.BATCH_STATUS: BatchStatus.RUNNING,
    }
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(SearchAttributeKey.for_keyword(name), value) for name, value in values.items()
    ]
    return TypedSearchAttributes(pairs)


def batch_priority(inp: BatchEnhanceInput) -> Priority:
    """Turns are fair between users: each user's workflow and image tasks share one fairness key (inherited by
    every activity of the batch), so a task queue dispatches users in turn, however many images one of them has
    waiting, instead of in arrival order."""
    return Priority(fairness_key=inp.user_id)


class TemporalLauncher:
    """Runs each batch as a BatchEnhanceWorkflow whose id is the batch id; commands are its signals."""

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
                    priority=batch_priority(inp),
                ),
                timeout=self.start_timeout,
            )
        except WorkflowAlreadyStartedError:
            log.info("batch %s was started before", inp.batch_id)

    async def cancel(self, batch_id: str) -> None:
        """The owner's cancel: the image in progress stops at its next checkpoint, the rest are refunded."""
        await self._signal(batch_id, Signal.CANCEL)

    async def pause(self, batch_id: str) -> None:
        await self._signal(batch_id, Signal.PAUSE)

    async def resume(self, batch_id: str) -> None:
        await self._signal(batch_id, Signal.RESUME)

    async def aclose(self) -> None:
        """Nothing to release: the client belongs to the caller."""

    async def ended_status(self, batch_id: str) -> BatchStatus | None:
        """The final status of a batch whose workflow has closed, or does not exist: the one its result reports if
        it completed, CANCELLED if it was cancelled, FAILED otherwise (failed, terminated, timed out, gone). None
        while it still runs."""
        handle = self.client.get_workflow_handle_for(BatchEnhanceWorkflow.run, batch_id)
        try:
            described = await asyncio.wait_for(handle.describe(), timeout=self.start_timeout)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return BatchStatus.FAILED
            raise
        if described.status in (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
            return None
        if described.status == WorkflowExecutionStatus.COMPLETED:
            result = await asyncio.wait_for(handle.result(), timeout=self.start_timeout)
            return BatchStatus(result.status)
        if described.status == WorkflowExecutionStatus.CANCELED:
            return BatchStatus.CANCELLED
        return BatchStatus.FAILED

    async def _signal(self, batch_id: str, signal: Signal) -> None:
        handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(batch_id)
        await asyncio.wait_for(handle.signal(signal), timeout=self.start_timeout)
