"""BatchEnhanceWorkflow: enhances a batch's images one after another, refunding what fails or is cancelled."""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from workflows.inputs import (
        INVALID_IMAGE_ERROR,
        MISSING_ORIGINAL_ERROR,
        BatchEnhanceInput,
        BatchProgress,
        BatchResult,
        CloseJobInput,
        CloseJobResult,
        FinishBatchInput,
        ProcessJobInput,
        ProcessJobResult,
    )

BATCH_STATUS = SearchAttributeKey.for_keyword("BatchStatus")
PROCESS_JOB = "process_enhancement_job"
CLOSE_JOB = "close_enhancement_job"
FINISH_BATCH = "finish_batch"

# Bookkeeping activities touch only the database: retry them until they succeed.
BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@workflow.defn
class BatchEnhanceWorkflow:
    """Orchestration only: every side effect is an activity."""

    def __init__(self) -> None:
        self._progress = BatchProgress(batch_id="", total=0)
        self._paused = False
        self._cancel_signalled = False

    @workflow.run
    async def run(self, inp: BatchEnhanceInput) -> BatchResult:
        self._progress = BatchProgress(batch_id=inp.batch_id, total=len(inp.job_ids), pending=len(inp.job_ids))
        self._set_status("RUNNING")
        unprocessed = list(zip(inp.job_ids, inp.image_ids, strict=True))
        try:
            while unprocessed:
                await workflow.wait_condition(lambda: not self._paused or self._cancel_signalled)
                if self._cancel_signalled:
                    break
                job_id, image_id = unprocessed[0]
                await self._process(inp, job_id, image_id)
                unprocessed.pop(0)
        except BaseException as err:
            if not is_cancelled_exception(err):
                raise
            # Shielded so a second cancel cannot cut the refunds short.
            await asyncio.shield(asyncio.ensure_future(self._cancel_all(unprocessed, "Batch cancelled")))
            raise
        if unprocessed:
            await self._cancel_all(unprocessed, "Batch cancelled by signal")
            return self._result(inp.batch_id, "CANCELLED")
        await self._finish(inp.batch_id, "COMPLETED")
        return self._result(inp.batch_id, "COMPLETED")

    async def _process(self, inp: BatchEnhanceInput, job_id: str, image_id: str) -> None:
        self._progress.current_job_id, self._progress.current_image_id = job_id, image_id
        workflow.set_current_details(f"Enhancing image {image_id} (job {job_id})")
        try:
            outcome: ProcessJobResult = await workflow.execute_activity(
                PROCESS_JOB,
                ProcessJobInput(job_id=job_id),
                result_type=ProcessJobResult,
                start_to_close_timeout=timedelta(seconds=inp.retry.start_to_close_seconds),
                heartbeat_timeout=timedelta(seconds=inp.retry.heartbeat_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=inp.retry.initial_interval_seconds),
                    maximum_interval=timedelta(seconds=inp.retry.max_interval_seconds),
                    maximum_attempts=inp.retry.max_attempts,
                    non_retryable_error_types=[INVALID_IMAGE_ERROR, MISSING_ORIGINAL_ERROR],
                ),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            await self._close(job_id, "FAILED", _failure_reason(err))
        else:
            self._count(outcome.status)
        finally:
            self._progress.current_job_id = self._progress.current_image_id = None

    async def _cancel_all(self, unprocessed: list[tuple[str, str]], reason: str) -> None:
        for job_id, _ in unprocessed:
            await self._close(job_id, "CANCELLED", reason)
        await self._finish(self._progress.batch_id, "CANCELLED")

    async def _close(self, job_id: str, status: str, reason: str) -> None:
        closed: CloseJobResult = await workflow.execute_activity(
            CLOSE_JOB,
            CloseJobInput(job_id=job_id, status=status, reason=reason),
            result_type=CloseJobResult,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=BOOKKEEPING_RETRY,
        )
        self._progress.tokens_refunded += closed.tokens_refunded
        self._count(closed.status)

    async def _finish(self, batch_id: str, status: str) -> None:
        await workflow.execute_activity(
            FINISH_BATCH,
            FinishBatchInput(batch_id=batch_id, status=status),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=BOOKKEEPING_RETRY,
        )
        self._set_status(status)

    def _count(self, status: str) -> None:
        progress = self._progress
        if status == "COMPLETED":
            progress.completed += 1
        elif status == "FAILED":
            progress.failed += 1
        elif status == "CANCELLED":
            progress.cancelled += 1
        progress.pending = progress.total - progress.completed - progress.failed - progress.cancelled

    def _set_status(self, status: str) -> None:
        workflow.upsert_search_attributes([BATCH_STATUS.value_set(status)])

    def _result(self, batch_id: str, status: str) -> BatchResult:
        p = self._progress
        return BatchResult(batch_id, status, p.completed, p.failed, p.cancelled, p.tokens_refunded)

    @workflow.signal
    def pause(self) -> None:
        """Stop before the next image until resumed."""
        if not self._paused:
            self._paused = self._progress.paused = True
            self._set_status("PAUSED")

    @workflow.signal
    def resume(self) -> None:
        """Continue after a pause."""
        if self._paused:
            self._paused = self._progress.paused = False
            self._set_status("RUNNING")

    @workflow.signal
    def cancel(self) -> None:
        """Finish the current image, then cancel and refund the rest."""
        self._cancel_signalled = self._progress.cancel_requested = True

    @workflow.query
    def progress(self) -> BatchProgress:
        """Counts, the image being enhanced and the tokens refunded so far."""
        return self._progress


def _failure_reason(err: ActivityError) -> str:
    cause = err.cause
    message = str(cause) if cause is not None else str(err)
    return f"Enhancement failed: {message}"[:1000]
