"""Cancel at any moment, by every path, on a real Temporal dev server and in direct mode, over real HTTP.

An image is held deterministically inside its activity (GatedStorage blocks the read of its original at a
checkpoint) while the cancel arrives; nothing waits on timing except the randomized test, whose point it is.
"""

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from core.contracts import BatchResult
from core.temporal_dev import temporal_binary
from core.vocabulary import Activity, BatchStatus, JobStatus, Signal
from db.models import Batch
from tests.conftest import (
    Harness,
    LiveServer,
    engine_for,
    eventually,
    make_settings,
    temporal_address,
    temporal_api,
    temporal_stack,
    temporal_worker,
)
from tests.db_helpers import (
    assert_balance_matches_ledger,
    balance,
    batch_row,
    jobs_of_batch,
    original_key_of,
    refunds_for_job,
)
from tests.factories import UserWithKey, make_album_with_images
from tests.launchers import HeldLauncher
from tests.storage_faults import GatedStorage
from workflows.batch_enhance import BatchEnhanceWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

IMAGES, COST, TOKENS = 3, 2, 100
PATHS = ["rest", "workflow-cancel", "signal"]


async def cli(env: WorkflowEnvironment, *args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        "--address",
        temporal_address(env.client),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


async def post(h: Harness, user: UserWithKey, path: str, json: dict | None = None) -> int:
    async with h.async_http() as http:
        return (await http.post(path, headers=user.headers, json=json)).status_code


async def start(h: Harness, user: UserWithKey, album: str) -> str:
    async with h.async_http() as http:
        response = await http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"})
    assert response.status_code == 200, response.text
    return str(response.json()["batchId"])


async def cancel(path: str, h: Harness, env: WorkflowEnvironment | None, user: UserWithKey, batch_id: str) -> int:
    """Send a cancel by one path; returns the HTTP status, or the CLI's exit code."""
    if path == "rest":
        return await post(h, user, f"/api/batches/{batch_id}/cancel")
    assert env is not None
    if path == "workflow-cancel":
        return await cli(env, "workflow", "cancel", "-w", batch_id)
    return await cli(env, "workflow", "signal", "-w", batch_id, "--name", "cancel")


async def pause(path: str, h: Harness, env: WorkflowEnvironment | None, user: UserWithKey, batch_id: str) -> None:
    if path == "rest":
        assert await post(h, user, f"/api/batches/{batch_id}/pause") == 202
    else:
        assert env is not None
        assert await cli(env, "workflow", "signal", "-w", batch_id, "--name", "pause") == 0


def assert_cancelled_from(h: Harness, user: UserWithKey, batch_id: str, first_cancelled: int) -> None:
    """Images before `first_cancelled` completed; it and every later one cancelled and refunded exactly once."""
    jobs = jobs_of_batch(h.engine, batch_id)
    expected = [JobStatus.COMPLETED] * first_cancelled + [JobStatus.CANCELLED] * (IMAGES - first_cancelled)
    assert [job.status for job in jobs] == expected
    assert [refunds_for_job(h.engine, job.id) for job in jobs] == [0 if s == "COMPLETED" else 1 for s in expected]
    assert [job.tokens_refunded for job in jobs] == [0 if s == "COMPLETED" else COST for s in expected]
    assert batch_row(h.engine, batch_id).status == BatchStatus.CANCELLED
    assert balance(h.engine, user.id) == TOKENS - COST * first_cancelled
    assert_balance_matches_ledger(h.engine, user.id)


async def workflow_outcome(h: Harness, batch_id: str) -> tuple[WorkflowExecutionStatus | None, BatchResult | None]:
    assert h.temporal is not None
    handle = h.temporal.get_workflow_handle_for(BatchEnhanceWorkflow.run, batch_id)
    try:
        result: BatchResult | None = await handle.result()
    except WorkflowFailureError:
        result = None
    return (await handle.describe()).status, result


@contextlib.asynccontextmanager
async def gated_temporal(
    env: WorkflowEnvironment, db_url: str, tmp_path: Path, **overrides: object
) -> AsyncIterator[Harness]:
    async with temporal_stack(env.client, db_url, GatedStorage(tmp_path / "gated"), None, **overrides) as h:
        yield h


def gated(h: Harness) -> GatedStorage:
    assert isinstance(h.storage, GatedStorage)
    return h.storage


async def hold_at(h: Harness, index: int) -> tuple[UserWithKey, str]:
    """Start a batch of IMAGES images whose image `index` is held inside its activity; returns once it is held."""
    user, album, image_ids = make_album_with_images(h.engine, h.storage, IMAGES, tokens=TOKENS)
    storage = gated(h)
    storage.gate(original_key_of(h.engine, image_ids[index]))
    batch_id = await start(h, user, album)
    await eventually(storage.waiting.is_set)
    return user, batch_id


# ---------------------------------------------------------------------------------------------------------------
# Temporal: every path x every moment


def expect_workflow(path: str, status: WorkflowExecutionStatus | None, result: BatchResult | None) -> None:
    if path == "workflow-cancel":
        assert status == WorkflowExecutionStatus.CANCELED and result is None
    else:
        assert status == WorkflowExecutionStatus.COMPLETED and result is not None and result.status == "CANCELLED"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("moment", "index"), [("first", 0), ("middle", 1), ("last", 2)])
async def test_temporal_cancel_while_an_image_is_enhanced(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path, path: str, moment: str, index: int
) -> None:
    async with gated_temporal(temporal_env, primary_db_url, tmp_path) as h:
        user, batch_id = await hold_at(h, index)
        assert await cancel(path, h, temporal_env, user, batch_id) in (0, 202)
        # The held image notices the cancel at its next checkpoint: no release needed.
        status, result = await workflow_outcome(h, batch_id)
        expect_workflow(path, status, result)
        assert_cancelled_from(h, user, batch_id, index)
        assert h.temporal is not None
        progress = await h.temporal.get_workflow_handle_for(BatchEnhanceWorkflow.run, batch_id).query(
            BatchEnhanceWorkflow.progress
        )
        refunded = COST * (IMAGES - index)
        assert progress.status == "CANCELLED" and progress.details.startswith(f"Cancelled: {refunded} tokens refunded")


@pytest.mark.parametrize("path", PATHS)
async def test_temporal_cancel_twice_at_once(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path, path: str
) -> None:
    async with gated_temporal(temporal_env, primary_db_url, tmp_path) as h:
        user, batch_id = await hold_at(h, 1)
        answers = await asyncio.gather(*(cancel(path, h, temporal_env, user, batch_id) for _ in range(2)))
        assert all(answer in (0, 202) for answer in answers), answers
        expect_workflow(path, *await workflow_outcome(h, batch_id))
        assert_cancelled_from(h, user, batch_id, 1)


@pytest.mark.parametrize("path", PATHS)
async def test_temporal_cancel_while_paused(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path, path: str
) -> None:
    async with gated_temporal(temporal_env, primary_db_url, tmp_path) as h:
        user, batch_id = await hold_at(h, 0)
        await pause(path, h, temporal_env, user, batch_id)
        gated(h).release.set()
        await eventually(lambda: jobs_of_batch(h.engine, batch_id)[0].status == JobStatus.COMPLETED)
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.PAUSED)
        async with h.async_http() as http:
            shown = (await http.get(f"/api/batches/{batch_id}", headers=user.headers)).json()
        assert (shown["status"], shown["completed"], shown["pending"]) == ("PAUSED", 1, 2)
        assert await cancel(path, h, temporal_env, user, batch_id) in (0, 202)
        expect_workflow(path, *await workflow_outcome(h, batch_id))
        assert_cancelled_from(h, user, batch_id, 1)


@pytest.mark.parametrize("path", PATHS)
async def test_temporal_cancel_before_the_first_image(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path, path: str
) -> None:
    # The workflow exists but no worker has run it yet.
    with temporal_api(temporal_env.client, primary_db_url, GatedStorage(tmp_path / "s")) as h:
        user, album, _ = make_album_with_images(h.engine, h.storage, IMAGES, tokens=TOKENS)
        batch_id = await start(h, user, album)
        assert await cancel(path, h, temporal_env, user, batch_id) in (0, 202)
        async with temporal_worker(h):
            expect_workflow(path, *await workflow_outcome(h, batch_id))
        assert_cancelled_from(h, user, batch_id, 0)
        assert gated(h).waiting.is_set() is False


@pytest.mark.parametrize("path", PATHS)
async def test_temporal_cancel_after_completion_changes_nothing(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path, path: str
) -> None:
    async with gated_temporal(temporal_env, primary_db_url, tmp_path) as h:
        user, album, _ = make_album_with_images(h.engine, h.storage, IMAGES, tokens=TOKENS)
        batch_id = await start(h, user, album)
        status, result = await workflow_outcome(h, batch_id)
        assert status == WorkflowExecutionStatus.COMPLETED and result is not None and result.status == "COMPLETED"
        answer = await cancel(path, h, temporal_env, user, batch_id)
        if path == "rest":
            assert answer == 409
        # Whatever the CLI answers for a closed execution, nothing may change:
        assert [job.status for job in jobs_of_batch(h.engine, batch_id)] == [JobStatus.COMPLETED] * IMAGES
        assert batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED
        assert balance(h.engine, user.id) == TOKENS - COST * IMAGES
        assert_balance_matches_ledger(h.engine, user.id)


async def test_temporal_pause_and_resume_over_rest(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    async with gated_temporal(temporal_env, primary_db_url, tmp_path) as h:
        user, batch_id = await hold_at(h, 0)
        assert await post(h, user, f"/api/batches/{batch_id}/pause") == 202
        assert batch_row(h.engine, batch_id).status == BatchStatus.PAUSED
        gated(h).release.set()
        await eventually(lambda: jobs_of_batch(h.engine, batch_id)[0].status == JobStatus.COMPLETED)
        assert h.temporal is not None
        handle = h.temporal.get_workflow_handle_for(BatchEnhanceWorkflow.run, batch_id)

        async def progress_shows_paused() -> bool:
            progress = await handle.query(BatchEnhanceWorkflow.progress)
            return progress.status == "PAUSED" and progress.details == "Paused after 1 of 3 images"

        for _ in range(200):
            if await progress_shows_paused():
                break
            await asyncio.sleep(0.05)
        assert await progress_shows_paused()
        assert [job.status for job in jobs_of_batch(h.engine, batch_id)][1:] == [JobStatus.PENDING] * 2
        assert await post(h, user, f"/api/batches/{batch_id}/resume") == 202
        result = await handle.result()
        assert (result.status, result.completed) == ("COMPLETED", 3)
        assert batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED
        assert (await handle.query(BatchEnhanceWorkflow.progress)).details.startswith("Completed: 3 enhanced")
        assert await post(h, user, f"/api/batches/{batch_id}/pause") == 409


async def test_temporal_a_long_image_shows_its_step(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    async with gated_temporal(temporal_env, primary_db_url, tmp_path, activity_progress_interval_seconds=0.1) as h:
        user, batch_id = await hold_at(h, 1)
        assert h.temporal is not None
        handle = h.temporal.get_workflow_handle_for(BatchEnhanceWorkflow.run, batch_id)
        await eventually(lambda: jobs_of_batch(h.engine, batch_id)[1].progress == "held")
        async with h.async_http() as http:
            shown = (await http.get(f"/api/batches/{batch_id}", headers=user.headers)).json()
        assert [job["progress"] for job in shown["jobs"]] == [None, "held", None]

        async def step_in_query() -> str | None:
            return (await handle.query(BatchEnhanceWorkflow.progress)).current_step

        for _ in range(100):
            if await step_in_query() == "held":
                break
            await asyncio.sleep(0.05)
        progress = await handle.query(BatchEnhanceWorkflow.progress)
        assert progress.current_step == "held" and progress.details.endswith(": held")
        gated(h).release.set()
        assert (await handle.result()).completed == IMAGES
        assert all(job.progress is None for job in jobs_of_batch(h.engine, batch_id))


async def test_temporal_randomized_cancels_all_take_effect(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    """24 cancels by random paths at random moments over real batches: every cancel that reaches the workflow
    before it decided to finish takes effect (the history tells when it arrived).

    Half of the batches hold their last image (never released), so they cannot finish first whatever the machine's
    speed: at least those 12 cancels must take effect, which keeps the test from passing vacuously on a loaded
    machine where every free-running batch may finish before its cancel arrives."""
    rng = random.Random(20261127)
    async with temporal_stack(temporal_env.client, primary_db_url, GatedStorage(tmp_path / "s")) as h:

        async def one(held: bool) -> str:
            user, album, image_ids = make_album_with_images(h.engine, h.storage, 4, tokens=TOKENS)
            if held:
                gated(h).gate(original_key_of(h.engine, image_ids[-1]))
            batch_id = await start(h, user, album)
            path = rng.choice(PATHS)
            await asyncio.sleep(rng.uniform(0, 0.6))  # the random moment is the point of this test
            answer = await cancel(path, h, temporal_env, user, batch_id)
            status, result = await workflow_outcome(h, batch_id)
            jobs = jobs_of_batch(h.engine, batch_id)
            assert all(refunds_for_job(h.engine, job.id) == (job.status != JobStatus.COMPLETED) for job in jobs)
            assert all(job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED) for job in jobs)
            assert_balance_matches_ledger(h.engine, user.id)
            if batch_row(h.engine, batch_id).status == BatchStatus.CANCELLED:
                expect_workflow(path, status, result)
                return "cancelled"
            # Not cancelled: only allowed if the cancel reached the workflow after it had decided to finish.
            assert not held, (path, answer)
            assert batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED, (path, answer)
            assert all(job.status == JobStatus.COMPLETED for job in jobs)
            assert await cancel_came_after_finish(h, batch_id), (path, answer)
            return "finished first"

        outcomes = []
        for _ in range(6):
            outcomes += await asyncio.gather(*(one(held) for held in (True, False, True, False)))
        assert len(outcomes) == 24 and outcomes.count("cancelled") >= 12, outcomes


async def cancel_came_after_finish(h: Harness, batch_id: str) -> bool:
    """Whether the workflow's history records the cancel (if at all) after the final finish_batch was scheduled."""
    assert h.temporal is not None
    finish_scheduled: int | None = None
    cancel_event: int | None = None
    async for event in h.temporal.get_workflow_handle(batch_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == Activity.FINISH_BATCH:
                finish_scheduled = event.event_id
        elif cancel_event is None and (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
            or (
                event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                and event.workflow_execution_signaled_event_attributes.signal_name == Signal.CANCEL
            )
        ):
            cancel_event = event.event_id
    assert finish_scheduled is not None
    return cancel_event is None or cancel_event > finish_scheduled


# ---------------------------------------------------------------------------------------------------------------
# Direct mode: the same moments through the REST cancel


@contextlib.contextmanager
def direct_api(db_url: str, tmp_path: Path, held: bool = False) -> Iterator[tuple[Harness, HeldLauncher | None]]:
    storage = GatedStorage(tmp_path / "gated")
    settings = make_settings(db_url, storage, direct_poll_interval_seconds=0.05, activity_progress_interval_seconds=0.1)
    holder: list[HeldLauncher] = []

    def hold(launcher: object) -> HeldLauncher:
        holder.append(HeldLauncher(launcher))  # type: ignore[arg-type]
        return holder[0]

    with LiveServer(settings, hold if held else None, storage) as api:
        yield Harness(settings, engine_for(db_url), storage, api), (holder[0] if holder else None)


@pytest.mark.parametrize(("moment", "index"), [("first", 0), ("middle", 1), ("last", 2)])
async def test_direct_cancel_while_an_image_is_enhanced(db_url: str, tmp_path: Path, moment: str, index: int) -> None:
    with direct_api(db_url, tmp_path) as (h, _):
        user, batch_id = await hold_at(h, index)
        assert await post(h, user, f"/api/batches/{batch_id}/cancel") == 202
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.CANCELLED)
        await eventually(lambda: len([j for j in jobs_of_batch(h.engine, batch_id) if j.status == "PROCESSING"]) == 0)
        assert_cancelled_from(h, user, batch_id, index)


async def test_direct_a_long_image_shows_its_step(db_url: str, tmp_path: Path) -> None:
    with direct_api(db_url, tmp_path) as (h, _):
        user, batch_id = await hold_at(h, 0)
        await eventually(lambda: jobs_of_batch(h.engine, batch_id)[0].progress == "held")
        gated(h).release.set()
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED)
        assert all(job.progress is None for job in jobs_of_batch(h.engine, batch_id))


async def test_direct_cancel_twice_at_once(db_url: str, tmp_path: Path) -> None:
    with direct_api(db_url, tmp_path) as (h, _):
        user, batch_id = await hold_at(h, 1)
        answers = await asyncio.gather(*(post(h, user, f"/api/batches/{batch_id}/cancel") for _ in range(2)))
        assert answers == [202, 202]
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.CANCELLED)
        assert_cancelled_from(h, user, batch_id, 1)


async def paused_after_first_image(h: Harness) -> tuple[UserWithKey, str]:
    user, batch_id = await hold_at(h, 0)
    assert await post(h, user, f"/api/batches/{batch_id}/pause") == 202
    gated(h).release.set()
    await eventually(lambda: jobs_of_batch(h.engine, batch_id)[0].status == JobStatus.COMPLETED)
    assert batch_row(h.engine, batch_id).status == BatchStatus.PAUSED
    assert [job.status for job in jobs_of_batch(h.engine, batch_id)][1:] == [JobStatus.PENDING] * 2
    return user, batch_id


async def test_direct_pause_and_resume(db_url: str, tmp_path: Path) -> None:
    with direct_api(db_url, tmp_path) as (h, _):
        user, batch_id = await paused_after_first_image(h)
        assert await post(h, user, f"/api/batches/{batch_id}/pause") == 202, "pausing a paused batch is a no-op"
        assert await post(h, user, f"/api/batches/{batch_id}/resume") == 202
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED)
        assert [job.status for job in jobs_of_batch(h.engine, batch_id)] == [JobStatus.COMPLETED] * IMAGES
        assert await post(h, user, f"/api/batches/{batch_id}/resume") == 409


async def test_direct_cancel_while_paused(db_url: str, tmp_path: Path) -> None:
    with direct_api(db_url, tmp_path) as (h, _):
        user, batch_id = await paused_after_first_image(h)
        assert await post(h, user, f"/api/batches/{batch_id}/cancel") == 202
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.CANCELLED)
        assert_cancelled_from(h, user, batch_id, 1)


async def test_direct_cancel_before_the_first_image(db_url: str, tmp_path: Path) -> None:
    with direct_api(db_url, tmp_path, held=True) as (h, held):
        assert held is not None
        user, album, _ = make_album_with_images(h.engine, h.storage, IMAGES, tokens=TOKENS)
        request = asyncio.ensure_future(start(h, user, album))
        await eventually(held.holding.is_set)
        batch_id = batch_row_of_album(h, album)
        assert await post(h, user, f"/api/batches/{batch_id}/cancel") == 202
        held.release.set()
        assert await request == batch_id
        assert_cancelled_from(h, user, batch_id, 0)
        assert gated(h).waiting.is_set() is False


async def test_direct_cancel_after_completion_changes_nothing(db_url: str, tmp_path: Path) -> None:
    with direct_api(db_url, tmp_path) as (h, _):
        user, album, _ = make_album_with_images(h.engine, h.storage, IMAGES, tokens=TOKENS)
        batch_id = await start(h, user, album)
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED)
        assert await post(h, user, f"/api/batches/{batch_id}/cancel") == 409
        assert await post(h, user, f"/api/batches/{batch_id}/pause") == 409
        assert [job.status for job in jobs_of_batch(h.engine, batch_id)] == [JobStatus.COMPLETED] * IMAGES
        assert balance(h.engine, user.id) == TOKENS - COST * IMAGES
        assert_balance_matches_ledger(h.engine, user.id)


def batch_row_of_album(h: Harness, album: str) -> str:
    with Session(h.engine) as session:
        return session.exec(select(Batch.id).where(col(Batch.album_id) == album)).one()
