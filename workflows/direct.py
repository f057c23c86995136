"""The in-process driver of batches (direct mode): BatchPolicy's steps run on this process's threads, with the
retries Temporal would apply, and commands (pause, resume, cancel) arriving in-process or through the batch row.

Its side effects are the activities themselves, received as core.contracts.InProcessActivities (wired in
api/main.py): this module imports nothing of activities/ or db/."""

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from temporalio.exceptions import ApplicationError

from core.contracts import (
    BatchEnhanceInput,
    BatchResult,
    CloseJobResult,
    FinishBatchInput,
    InProcessActivities,
    JobInterrupted,
    ProcessJobInput,
    ProcessJobResult,
    RetrySettings,
    SetBatchStatusInput,
)
from core.vocabulary import BatchStatus, JobStatus
from workflows.policy import BatchPolicy, Close, Enhanced, Failed, Interrupted, JobRef, Outcome, run_batch

log = logging.getLogger(__name__)
T = TypeVar("T")
A = TypeVar("A")


class DirectBatch:
    """One batch run in this process; implements the policy's BatchDriver."""

    def __init__(
        self, inp: BatchEnhanceInput, activities: InProcessActivities, executor: Executor, poll_interval: float
    ) -> None:
        self.inp = inp
        self.activities = activities
        self.executor = executor
        self.poll_interval = poll_interval
        self.policy = BatchPolicy.for_input(inp)
        self.progress = self.policy.snapshot()
        self._job_cancelled = threading.Event()  # read by the image's checkpoints on its worker thread
        self._changed = asyncio.Event()
        self._commands = 0  # in-process commands so far: a row read that overlapped one is stale

    async def run(self) -> BatchResult:
        """Run to the end; the batch row is watched meanwhile for commands sent to another process."""
        await self._apply_row()
        watcher = asyncio.create_task(self._watch_row())
        try:
            return await run_batch(self.policy, self)
        finally:
            watcher.cancel()

    # Commands ------------------------------------------------------------------------------------------------------

    def pause(self) -> None:
        self._commands += 1
        self.policy.pause()
        self._changed.set()

    def resume(self) -> None:
        self._commands += 1
        self.policy.resume()
        self._changed.set()

    def job_step(self, job_id: str, step: str) -> None:
        self.policy.job_step(job_id, step)
        self.progress = self.policy.snapshot()

    def cancel(self) -> None:
        self._commands += 1
        self.policy.request_cancel()
        self._job_cancelled.set()
        self._changed.set()

    # BatchDriver ---------------------------------------------------------------------------------------------------

    async def enhance(self, job: JobRef) -> Outcome:
        await self._apply_row()  # a cancel sent to another process lands before the image, not one poll later
        if self.policy.cancel_requested:
            return Interrupted()
        retry = self.inp.retry
        loop = asyncio.get_running_loop()

        def on_step(step: str) -> None:  # called on the image's thread
            loop.call_soon_threadsafe(self.job_step, job.job_id, step)

        attempt = 1
        while True:
            try:
                result: ProcessJobResult = await self._on_image_thread(
                    self.activities.enhance_in_process,
                    ProcessJobInput(job.job_id, self.inp.output_format, self.inp.keep_location),
                    self.inp.batch_id,
                    self._job_cancelled,
                    on_step,
                )
                return Enhanced(JobStatus(result.status))
            except JobInterrupted:
                return Interrupted()
            except ApplicationError as err:
                if err.non_retryable or attempt >= retry.max_attempts:
                    return Failed.because(err)
            except Exception as err:
                if attempt >= retry.max_attempts:
                    return Failed.because(err)
                log.warning("job %s failed (attempt %s), retrying", job.job_id, attempt, exc_info=True)
            if await self._cancelled_within(retry_delay(retry, attempt)):
                return Interrupted()
            attempt += 1

    async def close(self, step: Close) -> CloseJobResult:
        return await self._until_done(self.activities.close_job, step)

    async def show_status(self, status: BatchStatus) -> None:
        await self._until_done(self.activities.set_batch_status, SetBatchStatusInput(self.inp.batch_id, status))

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    async def wait_for_command(self, condition: Callable[[], bool]) -> None:
        await self.wait_until(condition)

    async def finish(self, status: BatchStatus) -> None:
        await self._until_done(self.activities.finish_batch, FinishBatchInput(self.inp.batch_id, status))

    def report(self, policy: BatchPolicy) -> None:
        self.progress = policy.snapshot()

    # Platform ------------------------------------------------------------------------------------------------------

    async def _on_image_thread(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    async def _until_done(self, fn: Callable[[A], T], arg: A) -> T:
        """Bookkeeping touches only the database: retry it until it succeeds, as Temporal would."""
        attempt = 1
        while True:
            try:
                return await asyncio.to_thread(fn, arg)
            except Exception:
                log.warning("batch %s: %s failed (attempt %s), retrying", self.inp.batch_id, fn, attempt, exc_info=True)
            await asyncio.sleep(retry_delay(self.inp.retry, attempt))
            attempt += 1

    async def _cancelled_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.wait_until(lambda: self.policy.cancel_requested), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def _apply_row(self) -> None:
        """Commands sent to another API process reach this one through the batch row."""
        commands_before = self._commands
        row = await asyncio.to_thread(self.activities.batch_commands, self.inp.batch_id)
        if row is None or self._commands != commands_before:
            # Read before an in-process command committed its row change: it would undo that command.
            return
        if row.cancel_requested and not self.policy.cancel_requested:
            self.cancel()
        elif row.status == BatchStatus.PAUSED and not self.policy.paused:
            self.pause()
        elif row.status == BatchStatus.RUNNING and self.policy.paused:
            self.resume()

    async def _watch_row(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self._apply_row()
            except Exception:
                log.warning("batch %s: could not read its row", self.inp.batch_id, exc_info=True)


def retry_delay(retry: RetrySettings, attempt: int) -> float:
    """Exponential backoff after the given failed attempt, as Temporal's RetryPolicy computes it."""
    return exponential_delay(retry.initial_interval_seconds, retry.max_interval_seconds, attempt)


def exponential_delay(initial: float, maximum: float, attempt: int) -> float:
    """The delay after failed attempt `attempt` (from 1): doubling from `initial`, at most `maximum`."""
    return float(min(initial * 2 ** (attempt - 1), maximum))


class DirectLauncher:
    """Runs batches in this process as background tasks."""

    def __init__(self, activities: InProcessActivities, executor: Executor, poll_interval: float = 0.5) -> None:
        self.activities = activities
        self.executor = executor
        self.poll_interval = poll_interval
        self.batches: dict[str, DirectBatch] = {}
        self.tasks: dict[str, asyncio.Task[BatchResult]] = {}

    async def start(self, inp: BatchEnhanceInput) -> None:
        """Start the batch in the background (fire and forget); a batch running here already is left alone."""
        if inp.batch_id in self.tasks:
            return
        batch = DirectBatch(inp, self.activities, self.executor, self.poll_interval)
        task = asyncio.create_task(batch.run(), name=f"batch-{inp.batch_id}")
        self.batches[inp.batch_id], self.tasks[inp.batch_id] = batch, task
        task.add_done_callback(lambda _: self._forget(inp.batch_id))

    async def run(self, inp: BatchEnhanceInput) -> BatchResult:
        """Run a batch to its end in the caller's task."""
        return await DirectBatch(inp, self.activities, self.executor, self.poll_interval).run()

    async def cancel(self, batch_id: str) -> None:
        """Cancel now if the batch runs here; elsewhere its process reads the batch row."""
        if batch_id in self.batches:
            self.batches[batch_id].cancel()

    async def pause(self, batch_id: str) -> None:
        if batch_id in self.batches:
            self.batches[batch_id].pause()

    async def resume(self, batch_id: str) -> None:
        if batch_id in self.batches:
            self.batches[batch_id].resume()

    async def aclose(self) -> None:
        """Stop running batches (an image in progress runs to its end); unfinished ones resume at the next start."""
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def _forget(self, batch_id: str) -> None:
        self.batches.pop(batch_id, None)
        self.tasks.pop(batch_id, None)
