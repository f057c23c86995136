"""The batch's decisions, made in one place: which image comes next, what a failure or a cancel does to the current
and the remaining jobs, the counts, the final status and the result.

Plain and deterministic (no I/O, no clock, no Temporal), so the Temporal workflow and the in-process driver run the
very same rules: each implements `BatchDriver` (the platform's side effects) and calls `run_batch`, the one loop.
Tests drive it with a scripted driver in milliseconds.
"""

import asyncio
import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.contracts import BatchEnhanceInput, BatchProgress, BatchResult, CloseJobInput, CloseJobResult
from core.vocabulary import MAX_ERROR_MESSAGE, BatchStatus, JobStatus

CANCEL_REASON = "Batch cancelled"


@dataclass(frozen=True)
class JobRef:
    """One image of the batch and the job that enhances it; `number` counts from 1 in processing order."""

    job_id: str
    image_id: str
    number: int


# What became of one attempt to enhance a job (retries included), as the driver saw it.
@dataclass(frozen=True)
class Enhanced:
    """The job's enhancement ran to its end; `status` is the job's status then (normally COMPLETED)."""

    status: JobStatus


@dataclass(frozen=True)
class Failed:
    """The image cannot be enhanced (invalid, missing, or out of retries)."""

    reason: str

    @classmethod
    def because(cls, error: object) -> "Failed":
        """The failure as its job's row and its owner see it: the error's message, cut to what the row keeps."""
        return cls(f"Enhancement failed: {error}"[:MAX_ERROR_MESSAGE])


@dataclass(frozen=True)
class Interrupted:
    """A cancel stopped the enhancement; the job may have completed just before it landed."""


Outcome = Enhanced | Failed | Interrupted


# The steps the policy asks its driver to take.
@dataclass(frozen=True)
class Process:
    job: JobRef


# Close an unfinished job as FAILED or CANCELLED and refund it (a no-op on a job that completed): the step is the
# close activity's input itself, so both drivers hand it on as it is.
Close = CloseJobInput


@dataclass(frozen=True)
class ShowStatus:
    """Record the batch's RUNNING/PAUSED status where users and operators see it."""

    status: BatchStatus


@dataclass(frozen=True)
class WaitWhilePaused:
    pass


@dataclass(frozen=True)
class Finish:
    status: BatchStatus


@dataclass(frozen=True)
class Done:
    result: BatchResult


Step = Process | Close | ShowStatus | WaitWhilePaused | Finish | Done


class BatchPolicy:
    """The state of one batch and every decision about it; commands (pause, resume, cancel) may come at any time."""

    def __init__(self, batch_id: str, jobs: list[JobRef], paused: bool = False) -> None:
        self.progress = BatchProgress(batch_id=batch_id, total=len(jobs), pending=len(jobs), paused=paused)
        self._remaining: deque[JobRef] = deque(jobs)
        self._to_close: deque[Close] = deque()
        self._shown = BatchStatus.PAUSED if paused else BatchStatus.RUNNING
        self._final: BatchStatus | None = None

    @classmethod
    def for_input(cls, inp: BatchEnhanceInput, paused: bool = False) -> "BatchPolicy":
        jobs = [
            JobRef(job_id, image_id, number)
            for number, (job_id, image_id) in enumerate(zip(inp.job_ids, inp.image_ids, strict=True), start=1)
        ]
        return cls(inp.batch_id, jobs, paused)

    # Commands ------------------------------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self.progress.paused

    @property
    def cancel_requested(self) -> bool:
        return self.progress.cancel_requested

    def pause(self) -> None:
        """Hold before the next image (the image in progress finishes)."""
        self.progress.paused = True

    def resume(self) -> None:
        self.progress.paused = False

    def request_cancel(self) -> None:
        """Cancel the image in progress and every remaining one; idempotent."""
        self.progress.cancel_requested = True

    def job_step(self, job_id: str, step: str) -> None:
        """Note the step of the image in progress (a late report about an earlier image is ignored)."""
        if self.progress.current_job_id == job_id:
            self.progress.current_step = step

    def status_to_show(self) -> BatchStatus | None:
        """RUNNING or PAUSED, when the last pause or resume asks for the status the batch does not show yet."""
        if self._final is not None or self.cancel_requested or not self._remaining:
            return None
        wanted = BatchStatus.PAUSED if self.paused else BatchStatus.RUNNING
        return wanted if wanted != self._shown else None

    def may_continue(self) -> bool:
        """Whether a driver waiting in WaitWhilePaused should ask for the next step."""
        return not self.paused or self.cancel_requested

    # Decisions -----------------------------------------------------------------------------------------------------

    def next_step(self) -> Step:
        """The one place that decides what the batch does next."""
        if self._to_close:
            return self._to_close[0]
        if self._final is not None:
            return Done(self.result())
        if self.cancel_requested:
            if self._remaining:
                self._close_remaining(JobStatus.CANCELLED, CANCEL_REASON)
                return self._to_close[0]
            return Finish(BatchStatus.CANCELLED)
        if not self._remaining:
            return Finish(BatchStatus.COMPLETED)
        to_show = self.status_to_show()
        if to_show is not None:
            return ShowStatus(to_show)
        if self.paused:
            return WaitWhilePaused()
        job = self._remaining[0]
        self.progress.current_job_id, self.progress.current_image_id = job.job_id, job.image_id
        return Process(job)

    # Facts reported by the driver ----------------------------------------------------------------------------------

    def enhanced(self, job: JobRef, outcome: Outcome) -> None:
        """Record how the enhancement of `job` (the head of the remaining jobs) ended."""
        if not self._remaining or self._remaining[0] != job:
            raise ValueError(f"job {job.job_id} is not the one in progress")
        self._remaining.popleft()
        self.progress.current_job_id = self.progress.current_image_id = self.progress.current_step = None
        match outcome:
            case Enhanced(status):
                self._count(status)
            case Failed(reason):
                self._to_close.append(Close(job.job_id, JobStatus.FAILED, reason))
            case Interrupted():
                self.request_cancel()
                self._to_close.append(Close(job.job_id, JobStatus.CANCELLED, CANCEL_REASON))

    def closed(self, result: CloseJobResult) -> None:
        """Record a Close step's result: the job's status afterwards and what it refunded."""
        step = self._to_close.popleft()
        if step.job_id != result.job_id:
            raise ValueError(f"closed {result.job_id}, expected {step.job_id}")
        self.progress.tokens_refunded += result.tokens_refunded
        self._count(JobStatus(result.status))

    def shown(self, status: BatchStatus) -> None:
        self._shown = status

    def finished(self, status: BatchStatus) -> None:
        self._final = status

    # Read-outs -----------------------------------------------------------------------------------------------------

    @property
    def status(self) -> BatchStatus:
        if self._final is not None:
            return self._final
        return BatchStatus.PAUSED if self._shown == BatchStatus.PAUSED else BatchStatus.RUNNING

    def details(self) -> str:
        """One line for operators (the workflow's current details in the Web UI): always the truth right now."""
        p = self.progress
        if self._final == BatchStatus.CANCELLED:
            return f"Cancelled: {p.tokens_refunded} tokens refunded ({p.completed} enhanced, {p.cancelled} cancelled)"
        if self._final is not None:
            return f"Completed: {p.completed} enhanced, {p.failed} failed, {p.tokens_refunded} tokens refunded"
        if self.cancel_requested:
            return "Cancelling: refunding the images not enhanced"
        done = p.total - p.pending
        if self._shown == BatchStatus.PAUSED and p.current_image_id is not None:
            return f"Pausing: finishing image {done + 1} of {p.total} ({p.current_image_id}, job {p.current_job_id})"
        if self._shown == BatchStatus.PAUSED:
            return f"Paused after {done} of {p.total} images"
        if p.current_image_id is not None:
            step = f": {p.current_step}" if p.current_step else ""
            return f"Enhancing image {done + 1} of {p.total} ({p.current_image_id}, job {p.current_job_id}){step}"
        return f"{done} of {p.total} images done"

    def snapshot(self) -> BatchProgress:
        """The answer of the `progress` query: counts, the image in progress, status and details."""
        return dataclasses.replace(self.progress, status=self.status, details=self.details())

    def result(self) -> BatchResult:
        p = self.progress
        status = self._final or self.status
        return BatchResult(p.batch_id, status, p.completed, p.failed, p.cancelled, p.tokens_refunded)

    def _close_remaining(self, status: JobStatus, reason: str) -> None:
        while self._remaining:
            self._to_close.append(Close(self._remaining.popleft().job_id, status, reason))

    def _count(self, status: JobStatus) -> None:
        p = self.progress
        if status == JobStatus.COMPLETED:
            p.completed += 1
        elif status == JobStatus.FAILED:
            p.failed += 1
        elif status == JobStatus.CANCELLED:
            p.cancelled += 1
        p.pending = p.total - p.completed - p.failed - p.cancelled


class BatchDriver(Protocol):
    """The side effects of a batch on one platform (Temporal activities, or threads in this process)."""

    async def enhance(self, job: JobRef) -> Outcome: ...

    async def close(self, step: Close) -> CloseJobResult: ...

    async def show_status(self, status: BatchStatus) -> None: ...

    async def wait_until(self, condition: Callable[[], bool]) -> None: ...

    async def wait_for_command(self, condition: Callable[[], bool]) -> None:
        """Return once `condition` holds, while an image is in progress (a pause or resume came); it is cancelled
        when the image ends first. A driver that must not show a command before the image ends never returns."""
        ...

    async def finish(self, status: BatchStatus) -> None: ...

    def report(self, policy: BatchPolicy) -> None:
        """Publish the policy's progress and details (query answers, UI details); no I/O that can fail."""
        ...


async def run_batch(policy: BatchPolicy, driver: BatchDriver) -> BatchResult:
    """Run a batch to its end: ask the policy for a step, let the driver take it, report what happened."""
    while True:
        step = policy.next_step()
        driver.report(policy)
        match step:
            case Process(job):
                policy.enhanced(job, await _enhance(policy, driver, job))
            case Close():
                policy.closed(await driver.close(step))
            case ShowStatus(status):
                await driver.show_status(status)
                policy.shown(status)
            case WaitWhilePaused():
                await driver.wait_until(policy.may_continue)
            case Finish(status):
                await driver.finish(status)
                policy.finished(status)
            case Done(result):
                driver.report(policy)
                return result


async def _enhance(policy: BatchPolicy, driver: BatchDriver, job: JobRef) -> Outcome:
    """Enhance one image; a pause or resume that comes meanwhile is shown at once (the batch says PAUSED while the
    image in progress finishes), one status at a time and in the order the commands came. The enhancement starts
    first and in this task, exactly as without commands, so a batch without them takes the very same steps."""
    showing: list[asyncio.Future[None]] = []

    async def show_commands() -> None:
        while True:
            await driver.wait_for_command(lambda: policy.status_to_show() is not None)
            status = policy.status_to_show()
            assert status is not None
            show = asyncio.ensure_future(_show(policy, driver, status))
            showing.append(show)
            await asyncio.shield(show)  # the image ending cancels this loop, never a status being shown

    shower = asyncio.ensure_future(show_commands())
    try:
        return await driver.enhance(job)
    finally:
        shower.cancel()
        for show in showing:
            await show


async def _show(policy: BatchPolicy, driver: BatchDriver, status: BatchStatus) -> None:
    await driver.show_status(status)
    policy.shown(status)
    driver.report(policy)
