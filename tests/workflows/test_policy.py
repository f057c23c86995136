"""The batch policy on its own, with a scripted driver: every decision, no server, milliseconds."""

import asyncio
from collections.abc import Callable

import pytest

from activities.batch import ProgressThrottle
from core.config import Settings
from core.contracts import BatchEnhanceInput, CloseJobResult
from core.vocabulary import BatchStatus, JobStatus
from services.batches import retry_settings
from workflows.policy import (
    BatchPolicy,
    Close,
    Done,
    Enhanced,
    Failed,
    Finish,
    Interrupted,
    JobRef,
    Outcome,
    Process,
    ShowStatus,
    WaitWhilePaused,
    run_batch,
)

JOBS = [JobRef(f"job-{n}", f"image-{n}", n) for n in range(1, 4)]


class ScriptedDriver:
    """Plays the platform: enhancement outcomes come from a script, closes refund 2 tokens unless completed;
    `on_enhance` lets a test send commands while an image is 'in progress'."""

    def __init__(self, outcomes: dict[str, Outcome], on_enhance: Callable[[JobRef], None] | None = None) -> None:
        self.outcomes = outcomes
        self.on_enhance = on_enhance
        self.completed: set[str] = set()
        self.log: list[str] = []
        self.reports: list[str] = []
        self.waiting = asyncio.Event()
        self.wake = asyncio.Event()

    async def enhance(self, job: JobRef) -> Outcome:
        self.log.append(f"enhance {job.job_id}")
        if self.on_enhance is not None:
            self.on_enhance(job)
        outcome = self.outcomes.get(job.job_id, Enhanced(JobStatus.COMPLETED))
        if isinstance(outcome, Enhanced) and outcome.status == JobStatus.COMPLETED:
            self.completed.add(job.job_id)
        return outcome

    async def close(self, step: Close) -> CloseJobResult:
        self.log.append(f"close {step.job_id} {step.status}")
        if step.job_id in self.completed:
            return CloseJobResult(step.job_id, JobStatus.COMPLETED, 0)
        return CloseJobResult(step.job_id, step.status, 2)

    async def show_status(self, status: BatchStatus) -> None:
        self.log.append(f"show {status}")

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        self.log.append("wait")
        self.waiting.set()
        while not condition():
            self.wake.clear()
            await self.wake.wait()

    async def wait_for_command(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.wake.clear()
            await self.wake.wait()

    async def finish(self, status: BatchStatus) -> None:
        self.log.append(f"finish {status}")

    def report(self, policy: BatchPolicy) -> None:
        self.reports.append(policy.details())


async def run(policy: BatchPolicy, driver: ScriptedDriver) -> tuple[str, int, int, int, int]:
    result = await run_batch(policy, driver)
    return result.status, result.completed, result.failed, result.cancelled, result.tokens_refunded


async def test_every_image_in_order_then_completed() -> None:
    driver = ScriptedDriver({})
    assert await run(BatchPolicy("b", JOBS), driver) == ("COMPLETED", 3, 0, 0, 0)
    assert driver.log == ["enhance job-1", "enhance job-2", "enhance job-3", "finish COMPLETED"]
    assert driver.reports[-1] == "Completed: 3 enhanced, 0 failed, 0 tokens refunded"


async def test_a_failure_closes_that_image_only() -> None:
    driver = ScriptedDriver({"job-2": Failed("Enhancement failed: broken")})
    assert await run(BatchPolicy("b", JOBS), driver) == ("COMPLETED", 2, 1, 0, 2)
    assert driver.log == ["enhance job-1", "enhance job-2", "close job-2 FAILED", "enhance job-3", "finish COMPLETED"]


@pytest.mark.parametrize("at", [1, 2, 3])
async def test_a_cancel_during_an_image_cancels_it_and_the_rest(at: int) -> None:
    policy = BatchPolicy("b", JOBS)
    driver = ScriptedDriver({f"job-{at}": Interrupted()}, on_enhance=lambda job: None)
    status, completed, failed, cancelled, refunded = await run(policy, driver)
    assert (status, completed, failed, cancelled, refunded) == ("CANCELLED", at - 1, 0, 4 - at, 2 * (4 - at))
    assert driver.log[-1] == "finish CANCELLED"
    assert [entry for entry in driver.log if entry.startswith("close")] == [
        f"close job-{n} CANCELLED" for n in range(at, 4)
    ]
    assert driver.reports[-1].startswith(f"Cancelled: {2 * (4 - at)} tokens refunded")


async def test_an_image_that_finished_as_the_cancel_landed_stays_completed() -> None:
    policy = BatchPolicy("b", JOBS)
    driver = ScriptedDriver({}, on_enhance=lambda job: policy.request_cancel() if job.number == 2 else None)
    assert await run(policy, driver) == ("CANCELLED", 2, 0, 1, 2)
    assert driver.log == ["enhance job-1", "enhance job-2", "close job-3 CANCELLED", "finish CANCELLED"]


async def test_interrupted_after_completing_is_closed_without_refund() -> None:
    policy = BatchPolicy("b", JOBS)
    driver = ScriptedDriver({"job-2": Interrupted()})
    driver.completed.add("job-2")  # the job committed its result just before the cancel was seen
    assert await run(policy, driver) == ("CANCELLED", 2, 0, 1, 2)


async def test_cancel_before_the_first_image_refunds_everything() -> None:
    policy = BatchPolicy("b", JOBS)
    policy.request_cancel()
    policy.request_cancel()  # twice is once
    driver = ScriptedDriver({})
    assert await run(policy, driver) == ("CANCELLED", 0, 0, 3, 6)
    assert not any(entry.startswith("enhance") for entry in driver.log)


async def test_pause_holds_before_the_next_image_and_resume_continues() -> None:
    policy = BatchPolicy("b", JOBS)
    driver = ScriptedDriver({}, on_enhance=lambda job: policy.pause() if job.number == 1 else None)
    batch = asyncio.ensure_future(run(policy, driver))
    await driver.waiting.wait()
    assert policy.status == BatchStatus.PAUSED and policy.snapshot().status == "PAUSED"
    assert policy.details() == "Paused after 1 of 3 images"
    assert driver.log == ["enhance job-1", "show PAUSED", "wait"]
    policy.resume()
    driver.wake.set()
    assert await batch == ("COMPLETED", 3, 0, 0, 0)
    assert driver.log[3:] == ["show RUNNING", "enhance job-2", "enhance job-3", "finish COMPLETED"]


class HeldDriver(ScriptedDriver):
    """The first image stays in progress until `release` is set."""

    def __init__(self) -> None:
        super().__init__({})
        self.in_progress = asyncio.Event()
        self.release = asyncio.Event()
        self.shown = asyncio.Event()

    async def enhance(self, job: JobRef) -> Outcome:
        if job.number == 1:
            self.in_progress.set()
            await self.release.wait()
        return await super().enhance(job)

    async def show_status(self, status: BatchStatus) -> None:
        await super().show_status(status)
        self.shown.set()

    async def command(self, command: Callable[[], None]) -> None:
        """Send a command while the first image is in progress and wait until the driver has shown it."""
        self.shown.clear()
        command()
        self.wake.set()
        await self.shown.wait()


async def held_at_the_first_image() -> tuple[BatchPolicy, HeldDriver, asyncio.Future[tuple[str, int, int, int, int]]]:
    policy = BatchPolicy("b", JOBS)
    driver = HeldDriver()
    batch = asyncio.ensure_future(run(policy, driver))
    await driver.in_progress.wait()
    return policy, driver, batch


async def test_a_pause_during_an_image_is_shown_at_once() -> None:
    policy, driver, batch = await held_at_the_first_image()
    await driver.command(policy.pause)
    assert policy.snapshot().status == "PAUSED"
    assert policy.details() == "Pausing: finishing image 1 of 3 (image-1, job job-1)"
    driver.release.set()
    await driver.waiting.wait()
    assert driver.log == ["show PAUSED", "enhance job-1", "wait"]
    assert policy.details() == "Paused after 1 of 3 images"
    policy.resume()
    driver.wake.set()
    assert await batch == ("COMPLETED", 3, 0, 0, 0)


async def test_pause_and_resume_during_an_image_are_shown_in_their_order() -> None:
    policy, driver, batch = await held_at_the_first_image()
    await driver.command(policy.pause)
    await driver.command(policy.resume)
    driver.release.set()
    assert await batch == ("COMPLETED", 3, 0, 0, 0)
    assert driver.log == [
        "show PAUSED",
        "show RUNNING",
        "enhance job-1",
        "enhance job-2",
        "enhance job-3",
        "finish COMPLETED",
    ]


async def test_cancel_while_paused_refunds_the_rest_without_resuming() -> None:
    policy = BatchPolicy("b", JOBS)
    driver = ScriptedDriver({}, on_enhance=lambda job: policy.pause())
    batch = asyncio.ensure_future(run(policy, driver))
    await driver.waiting.wait()
    policy.request_cancel()
    driver.wake.set()
    assert await batch == ("CANCELLED", 1, 0, 2, 4)
    assert "show RUNNING" not in driver.log


async def test_a_pause_after_the_last_image_does_not_hold_the_end() -> None:
    policy = BatchPolicy("b", JOBS)
    driver = ScriptedDriver({}, on_enhance=lambda job: policy.pause() if job.number == 3 else None)
    assert await run(policy, driver) == ("COMPLETED", 3, 0, 0, 0)


async def test_a_batch_resumed_after_a_restart_starts_paused() -> None:
    policy = BatchPolicy("b", JOBS, paused=True)
    assert isinstance(policy.next_step(), WaitWhilePaused)
    policy.resume()
    assert policy.next_step() == ShowStatus(BatchStatus.RUNNING)


def test_steps_are_decided_once_and_in_order() -> None:
    policy = BatchPolicy("b", JOBS[:1])
    step = policy.next_step()
    assert step == Process(JOBS[0]) and policy.next_step() == step, "asking again changes nothing"
    with pytest.raises(ValueError):
        policy.enhanced(JOBS[0].__class__("other", "image", 9), Enhanced(JobStatus.COMPLETED))
    policy.enhanced(JOBS[0], Enhanced(JobStatus.COMPLETED))
    assert policy.next_step() == Finish(BatchStatus.COMPLETED)
    policy.finished(BatchStatus.COMPLETED)
    assert isinstance(policy.next_step(), Done)


def test_progress_counts_and_input_order() -> None:
    retry = retry_settings(Settings(_env_file=None))
    inp = BatchEnhanceInput("b", "album", "user", "TIER_1K", ["j1", "j2"], ["i1", "i2"], retry)
    policy = BatchPolicy.for_input(inp)
    step = policy.next_step()
    assert step == Process(JobRef("j1", "i1", 1))
    snapshot = policy.snapshot()
    assert (snapshot.total, snapshot.pending, snapshot.current_image_id) == (2, 2, "i1")
    assert snapshot.details == "Enhancing image 1 of 2 (i1, job j1)"


def test_a_step_shows_only_for_the_image_in_progress() -> None:
    policy = BatchPolicy("b", JOBS)
    policy.next_step()
    policy.job_step("job-2", "tile 1 of 4")  # late news about another image
    assert policy.snapshot().current_step is None
    policy.job_step("job-1", "tile 3 of 4")
    assert policy.details().endswith(": tile 3 of 4")
    policy.enhanced(JOBS[0], Enhanced(JobStatus.COMPLETED))
    assert policy.snapshot().current_step is None


def test_progress_throttle_publishes_long_jobs_only_and_rarely() -> None:
    now = [0.0]
    published: list[str] = []
    throttle = ProgressThrottle(published.append, interval=2.0, clock=lambda: now[0])
    throttle.offer("tile 1 of 9")  # a quick image publishes nothing
    now[0] = 2.5
    throttle.offer("tile 2 of 9")
    now[0] = 3.0
    throttle.offer("tile 3 of 9")  # too soon
    now[0] = 5.0
    throttle.offer("tile 3 of 9")
    throttle.offer("tile 4 of 9")
    now[0] = 7.5
    throttle.offer("tile 4 of 9")
    throttle.offer("tile 5 of 9")  # too soon again
    assert published == ["tile 2 of 9", "tile 3 of 9", "tile 4 of 9"]
