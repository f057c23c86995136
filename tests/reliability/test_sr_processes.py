"""Super-resolution in the worker's child processes, with a real worker process, a real Temporal dev server and
the real network: an SR batch on cores saturated by busy loops completes with no attempt lost to a heartbeat
timeout; an SR child killed mid-image costs one retry in a fresh child and the worker survives; a child that is
killed at every attempt ends its job FAILED and refunded exactly once."""

import asyncio
import contextlib
import io
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlmodel import Session
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.vocabulary import Activity, BatchStatus, JobStatus
from db.models import EnhancementJob
from storage.local import LocalStorage
from tests.conftest import Harness, eventually, temporal_api
from tests.db_helpers import assert_balance_matches_ledger, balance, batch_row, jobs_of_batch, refunds_for_job
from tests.factories import FIXTURES, UserWithKey, make_album, make_user
from tests.reliability.processes import ManagedProcess, ProcessSet, busy_cores, process_set, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("sr_runtime")]

TOKENS = 100
IMAGES = 4
# The worker's own settings, as a deployment would set them (not the tests' fast defaults): the heartbeat
# timeout is what a loaded machine must never trip.
WORKER_SETTINGS: dict[str, object] = {
    "enhance_engine": "sr",
    "sr_tile_size": 32,
    "sr_processes": 1,
    "activity_heartbeat_timeout_seconds": 5,
    "activity_progress_interval_seconds": 0.1,
}


def photo(width: int, height: int, shift: int = 0) -> bytes:
    with PILImage.open(FIXTURES / "astronaut.png") as image:
        crop = image.convert("RGB").crop((shift, shift, shift + width, shift + height))
    out = io.BytesIO()
    crop.save(out, "JPEG", quality=92)
    return out.getvalue()


SR_SETTINGS = (
    "sr_tile_size",
    "sr_processes",
    "activity_max_attempts",
    "activity_initial_retry_seconds",
    "activity_max_retry_seconds",
    "activity_heartbeat_timeout_seconds",
    "activity_progress_interval_seconds",
)


def sr_children(worker: ManagedProcess) -> list[int]:
    """The worker's SR child processes, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == worker.pid and b"imaging._child" in cmdline and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


@contextlib.asynccontextmanager
async def api_and_worker(
    env: WorkflowEnvironment, db_url: str, tmp_path: Path, **overrides: object
) -> AsyncIterator[tuple[Harness, ManagedProcess]]:
    """The API (in this process) and a worker process whose SR processes are ready."""
    settings = WORKER_SETTINGS | overrides
    with (
        temporal_api(env.client, db_url, LocalStorage(tmp_path / "storage"), None, **settings) as h,
        process_set(tmp_path / "processes") as processes,
    ):
        worker = start_worker(processes, h.settings)
        await eventually(lambda: "super-resolution processes ready" in worker.log_path.read_text(), within=120)
        yield h, worker


def start_worker(processes: ProcessSet, settings: Settings) -> ManagedProcess:
    return processes.worker(worker_env(settings, *SR_SETTINGS))


async def sr_batch(h: Harness, sizes: list[tuple[int, int]], tier: str = "TIER_1K") -> tuple[UserWithKey, str]:
    """Upload photos of these sizes through the API (their stored sizes route them to the network) and enhance."""
    user = make_user(h.engine, tokens=TOKENS)
    album = make_album(h.engine, user)
    files = [("files", (f"p{n}.jpg", photo(*size, shift=7 * n), "image/jpeg")) for n, size in enumerate(sizes)]
    async with h.async_http() as http:
        uploaded = await http.post(f"/api/albums/{album}/images", headers=user.headers, files=files)
        assert uploaded.status_code == 201, uploaded.text
        started = await http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": tier})
    assert started.status_code == 200, started.text
    batch_id = str(started.json()["batchId"])
    assert started.json()["queued"] == len(sizes)
    return user, batch_id


def finished(h: Harness, batch_id: str) -> bool:
    return batch_row(h.engine, batch_id).status not in (BatchStatus.CHARGED, BatchStatus.RUNNING)


async def image_attempts(h: Harness, batch_id: str) -> list[tuple[int, str]]:
    """(attempt, last failure) of each image activity's final start, and every activity timeout, from history."""
    assert h.temporal is not None
    attempts: list[tuple[int, str]] = []
    scheduled: dict[int, str] = {}
    async for event in h.temporal.get_workflow_handle(batch_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if scheduled.get(started.scheduled_event_id) == Activity.PROCESS_JOB:
                attempts.append((started.attempt, started.last_failure.message))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            attempts.append((-1, event.activity_task_timed_out_event_attributes.failure.message))
    return attempts


async def test_an_sr_batch_completes_on_saturated_cores_without_a_heartbeat_timeout(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    # Large tiles, so that a single call into the network takes seconds once busy loops share the cores, longer
    # than the shortest heartbeat timeout the settings allow (in the worker's interpreter such a call held the
    # heartbeat thread as long).
    settings = {"sr_processes": 2, "sr_tile_size": 512, "activity_heartbeat_timeout_seconds": 2}
    async with api_and_worker(temporal_env, primary_db_url, tmp_path, **settings) as (h, worker):
        with busy_cores():
            # 200-212 px wide photos to TIER_1K: two 2x passes each, the second over a 400 x 300 tile.
            user, batch_id = await sr_batch(h, [(200 + 4 * n, 150) for n in range(IMAGES)])
            await eventually(lambda: finished(h, batch_id), within=600, interval=0.2)
            assert worker.alive()
        jobs = jobs_of_batch(h.engine, batch_id)
        assert [job.status for job in jobs] == [JobStatus.COMPLETED] * IMAGES, [job.error_message for job in jobs]
        assert [job.attempts for job in jobs] == [1] * IMAGES
        assert await image_attempts(h, batch_id) == [(1, "")] * IMAGES
        assert balance(h.engine, user.id) == TOKENS - IMAGES * 2
        assert_balance_matches_ledger(h.engine, user.id)


async def test_an_sr_child_killed_mid_image_is_replaced_and_the_image_completes(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    async with api_and_worker(temporal_env, primary_db_url, tmp_path) as (h, worker):
        (first_child,) = sr_children(worker)
        user, batch_id = await sr_batch(h, [(400, 300)])  # 600 tiles of 32 px
        job_id = jobs_of_batch(h.engine, batch_id)[0].id
        await eventually(lambda: (job(h, job_id).progress or "").startswith("tile "), within=120, interval=0.02)
        os.kill(first_child, signal.SIGKILL)
        await eventually(lambda: finished(h, batch_id), within=300, interval=0.2)
        assert worker.alive(), worker.log_tail()
        done = job(h, job_id)
        assert (done.status, done.attempts) == (JobStatus.COMPLETED, 2), done.error_message
        assert (done.enhanced_width, done.enhanced_height) == (1024, 768)
        (retried,) = await image_attempts(h, batch_id)
        assert retried[0] == 2 and "killed by signal 9" in retried[1], retried
        assert sr_children(worker) not in ([], [first_child])
        assert refunds_for_job(h.engine, job_id) == 0
        assert balance(h.engine, user.id) == TOKENS - 2
        assert_balance_matches_ledger(h.engine, user.id)


async def test_a_child_that_keeps_crashing_fails_the_job_which_is_refunded_once(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    async with api_and_worker(temporal_env, primary_db_url, tmp_path) as (h, worker):
        user, batch_id = await sr_batch(h, [(400, 300), (64, 48)])
        crashing = jobs_of_batch(h.engine, batch_id)[0].id
        killed: set[int] = set()

        async def kill_every_attempt() -> None:
            """Kill the SR child as soon as the job is at a tile of an attempt not yet crashed."""
            while not finished(h, batch_id):
                row = job(h, crashing)
                if row.status == JobStatus.PROCESSING and row.attempts > len(killed) and row.progress:
                    for child in set(sr_children(worker)) - killed:
                        os.kill(child, signal.SIGKILL)
                        killed.add(child)
                await asyncio.sleep(0.02)

        await asyncio.wait_for(kill_every_attempt(), timeout=300)
        assert worker.alive(), worker.log_tail()
        failed, other = jobs_of_batch(h.engine, batch_id)
        assert (failed.status, failed.attempts) == (JobStatus.FAILED, h.settings.activity_max_attempts)
        assert "super-resolution process" in (failed.error_message or "")
        assert refunds_for_job(h.engine, failed.id) == 1 and failed.tokens_refunded == 2
        assert other.status == JobStatus.COMPLETED and refunds_for_job(h.engine, other.id) == 0
        assert batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED
        assert balance(h.engine, user.id) == TOKENS - 2
        assert_balance_matches_ledger(h.engine, user.id)


def job(h: Harness, job_id: str) -> EnhancementJob:
    with Session(h.engine) as session:
        return session.get_one(EnhancementJob, job_id)
