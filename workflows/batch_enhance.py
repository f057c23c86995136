"""BatchEnhanceWorkflow: the Temporal driver of a batch. The decisions are BatchPolicy's; this class only turns its
steps into activities, signals into policy commands, and a workflow cancel into a policy cancel."""

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType, ActivityHandle

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        BatchEnhanceInput,
        BatchProgress,
        BatchResult,
        CloseJobResult,
        FinishBatchInput,
        JobStep,
        ProcessJobInput,
        ProcessJobResult,
        SetBatchStatusInput,
    )
    from core.vocabulary import (
        INVALID_IMAGE_ERROR,
        MISSING_ORIGINAL_ERROR,
        PROGRESS_QUERY,
        Activity,
        BatchStatus,
        JobStatus,
        SearchAttribute,
        Signal,
    )
    from workflows.policy import (
        BatchPolicy,
        Close,
        Enhanced,
        Failed,
        Interrupted,
        JobRef,
        Outcome,
        run_batch,
    )

BATCH_STATUS = SearchAttributeKey.for_keyword(SearchAttribute.BATCH_STATUS)
# The version of the workflow that shows a pause or resume while an image is in progress (workflow.patched).
SHOW_COMMANDS_AT_ONCE = "show-commands-at-once"

# Bookkeeping activities touch only the database: retry them until they succeed.
BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
BOOKKEEPING_TIMEOUT = timedelta(seconds=60)


@workflow.defn
class BatchEnhanceWorkflow:
    """Orchestration only: every side effect is an activity, every decision is the policy's."""

    @workflow.init
    def __init__(self, inp: BatchEnhanceInput) -> None:
        # Built from the input here, not in run: a signal sent with or right after the start may be handled first.
        self._inp = inp
        self._policy = BatchPolicy.for_input(inp)
        self._progress = self._policy.snapshot()
        self._enhancing: ActivityHandle[ProcessJobResult] | None = None

    @workflow.run
    async def run(self, inp: BatchEnhanceInput) -> BatchResult:
        batch = asyncio.ensure_future(run_batch(self._policy, self))
        workflow_cancel: BaseException | None = None
        while True:
            try:
                # Shielded: a workflow cancel becomes a policy cancel, and the batch still closes its books.
                result = await asyncio.shield(batch)
                break
            except asyncio.CancelledError as err:
                if batch.done():
                    raise
                workflow_cancel = err
                self._cancel()
        if workflow_cancel is not None:
            raise workflow_cancel  # the execution ends CANCELED, its refunds done
        return result

    # BatchDriver ---------------------------------------------------------------------------------------------------

    async def enhance(self, job: JobRef) -> Outcome:
        inp = self._inp
        # Images the network enlarges run where their workers are, with time for their tiles.
        heavy = job.job_id in inp.sr_job_ids and inp.sr_task_queue is not None
        self._enhancing = workflow.start_activity(
            Activity.PROCESS_JOB,
            ProcessJobInput(job_id=job.job_id, output_format=inp.output_format, keep_location=inp.keep_location),
            result_type=ProcessJobResult,
            task_queue=inp.sr_task_queue if heavy else None,
            start_to_close_timeout=timedelta(
                seconds=inp.sr_job_seconds.get(job.job_id, inp.retry.sr_start_to_close_seconds)
                if heavy
                else inp.retry.start_to_close_seconds
            ),
            heartbeat_timeout=timedelta(seconds=inp.retry.heartbeat_timeout_seconds),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=inp.retry.initial_interval_seconds),
                maximum_interval=timedelta(seconds=inp.retry.max_interval_seconds),
                maximum_attempts=inp.retry.max_attempts,
                non_retryable_error_types=[INVALID_IMAGE_ERROR, MISSING_ORIGINAL_ERROR],
            ),
            # A cancel waits for the activity to stop, so the job's fate (completed or not) is known when we close it.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            outcome: ProcessJobResult = await self._enhancing
        except ActivityError as err:
            if is_cancelled_exception(err):
                return Interrupted()
            return Failed.because(err.cause if err.cause is not None else err)
        except asyncio.CancelledError:
            return Interrupted()  # cancelled before the activity was even scheduled
        finally:
            self._enhancing = None
        return Enhanced(JobStatus(outcome.status))

    async def close(self, step: Close) -> CloseJobResult:
        closed: CloseJobResult = await workflow.execute_activity(
            Activity.CLOSE_JOB,
            step,
            result_type=CloseJobResult,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        return closed

    async def show_status(self, status: BatchStatus) -> None:
        await workflow.execute_activity(
            Activity.SET_BATCH_STATUS,
            SetBatchStatusInput(batch_id=self._inp.batch_id, status=status),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        workflow.upsert_search_attributes([BATCH_STATUS.value_set(status)])

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        await workflow.wait_condition(condition)

    async def wait_for_command(self, condition: Callable[[], bool]) -> None:
        await workflow.wait_condition(condition)
        if not workflow.patched(SHOW_COMMANDS_AT_ONCE):
            # Replaying a history made before commands were shown during an image: it showed them after.
            await workflow.wait_condition(lambda: False)

    async def finish(self, status: BatchStatus) -> None:
        await workflow.execute_activity(
            Activity.FINISH_BATCH,
            FinishBatchInput(batch_id=self._inp.batch_id, status=status),
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        workflow.upsert_search_attributes([BATCH_STATUS.value_set(status)])

    def report(self, policy: BatchPolicy) -> None:
        self._progress = policy.snapshot()
        workflow.set_current_details(self._progress.details)

    # Signals and query ---------------------------------------------------------------------------------------------

    @workflow.signal(name=Signal.PAUSE)
    def pause(self) -> None:
        """Hold before the next image until resumed."""
        self._command(self._policy.pause)

    @workflow.signal(name=Signal.RESUME)
    def resume(self) -> None:
        """Continue after a pause."""
        self._command(self._policy.resume)

    @workflow.signal(name=Signal.CANCEL)
    def cancel(self) -> None:
        """Stop the image in progress at its next checkpoint, cancel and refund it and every remaining image."""
        self._command(self._cancel)

    @workflow.signal(name=Signal.JOB_STEP)
    def job_step(self, update: JobStep) -> None:
        """The step a long-running image is at (sent by its activity), shown by the progress query and details."""
        self._policy.job_step(update.job_id, update.step)
        self.report(self._policy)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> BatchProgress:
        """Counts, status, the image being enhanced and the tokens refunded so far."""
        return self._progress

    def _command(self, command: Callable[[], Any]) -> None:
        command()
        self._progress = self._policy.snapshot()

    def _cancel(self) -> None:
        self._policy.request_cancel()
        if self._enhancing is not None:
            self._enhancing.cancel()
