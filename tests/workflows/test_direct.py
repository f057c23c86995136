"""Direct mode: the same activities in-process, with the workflow's retry, refund, cancel and resume rules."""

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import update
from sqlmodel import col

from activities.batch import BatchActivities
from core.contracts import BatchEnhanceInput
from db.models import Batch, BatchStatus, JobStatus
from db.session import session_scope
from services.batches import batch_input, mark_started
from services.reconciler import reconcile_once
from storage.local import LocalStorage
from tests.conftest import engine_for, eventually, make_settings
from tests.db_helpers import (
    assert_balance_matches_ledger,
    balance,
    batch_row,
    jobs_of_batch,
    original_key_of,
    refunds_for_job,
)
from tests.factories import charge_batch, make_album_with_images, make_image
from tests.storage_faults import FlakyStorage, GatedStorage
from workflows.direct import DirectLauncher

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def charge_album(db_url: str, storage: LocalStorage, user_id: str, album: str) -> BatchEnhanceInput:
    """Charge a batch as the enhance route does and return its workflow input."""
    engine = engine_for(db_url)
    settings = make_settings(db_url, storage)
    with session_scope(engine) as session:
        planned = charge_batch(session, user_id, album)
        assert planned.batch is not None
        mark_started(session, planned.batch.id)
        return batch_input(session, planned.batch, settings)


async def test_corrupt_image_is_refunded_and_the_rest_completes(
    db_url: str, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    engine, storage = engine_for(db_url), LocalStorage(tmp_path / "s")
    user, album, _ = make_album_with_images(engine, storage, 2, tokens=20)
    bad = make_image(engine, storage, album, b"not an image at all", sort_order=5)
    inp = charge_album(db_url, storage, user.id, album)
    result = await DirectLauncher(BatchActivities(engine, storage, 60_000_000), executor).run(inp)
    assert (result.status, result.completed, result.failed, result.tokens_refunded) == ("COMPLETED", 2, 1, 2)
    jobs = {job.image_id: job for job in jobs_of_batch(engine, inp.batch_id)}
    assert jobs[bad].status == JobStatus.FAILED and jobs[bad].attempts == 1
    assert refunds_for_job(engine, jobs[bad].id) == 1
    assert balance(engine, user.id) == 20 - 6 + 2
    assert batch_row(engine, inp.batch_id).status == BatchStatus.COMPLETED
    assert_balance_matches_ledger(engine, user.id)


async def test_transient_errors_are_retried(db_url: str, tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    engine, storage = engine_for(db_url), FlakyStorage(tmp_path / "s", failures=2)
    user, album, _ = make_album_with_images(engine, storage, 1, tokens=20)
    inp = charge_album(db_url, storage, user.id, album)
    result = await DirectLauncher(BatchActivities(engine, storage, 60_000_000), executor).run(inp)
    [job] = jobs_of_batch(engine, inp.batch_id)
    assert (result.completed, job.attempts) == (1, 3)


async def test_lasting_errors_fail_after_the_attempts_and_refund_once(
    db_url: str, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    engine, storage = engine_for(db_url), FlakyStorage(tmp_path / "s", failures=None)
    user, album, _ = make_album_with_images(engine, storage, 1, tokens=20)
    inp = charge_album(db_url, storage, user.id, album)
    result = await DirectLauncher(BatchActivities(engine, storage, 60_000_000), executor).run(inp)
    [job] = jobs_of_batch(engine, inp.batch_id)
    assert (result.failed, job.status, job.attempts) == (1, JobStatus.FAILED, inp.retry.max_attempts)
    assert refunds_for_job(engine, job.id) == 1 and balance(engine, user.id) == 20


async def test_cancel_flag_stops_before_the_next_image(
    db_url: str, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    engine, storage = engine_for(db_url), GatedStorage(tmp_path / "s")
    user, album, images = make_album_with_images(engine, storage, 3, tokens=20)
    first, *_ = images
    inp = charge_album(db_url, storage, user.id, album)
    storage.gate(original_key_of(engine, first))
    launcher = DirectLauncher(BatchActivities(engine, storage, 60_000_000), executor)
    await launcher.start(inp)
    await eventually(storage.waiting.is_set)
    with session_scope(engine) as session:
        session.exec(update(Batch).where(col(Batch.id) == inp.batch_id).values(cancel_requested=True))
    storage.release.set()
    result = await launcher.tasks[inp.batch_id]
    assert (result.status, result.completed, result.cancelled, result.tokens_refunded) == ("CANCELLED", 1, 2, 4)
    assert batch_row(engine, inp.batch_id).status == BatchStatus.CANCELLED
    assert balance(engine, user.id) == 20 - 6 + 4
    assert_balance_matches_ledger(engine, user.id)


async def test_unfinished_direct_batches_resume_after_a_restart(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    # A database of its own: the reconciler looks at every batch in it.
    db_url = f"sqlite:///{tmp_path / 'own.db'}"
    engine, storage = engine_for(db_url), LocalStorage(tmp_path / "s")
    user, album, _ = make_album_with_images(engine, storage, 2, tokens=20)
    inp = charge_album(db_url, storage, user.id, album)  # RUNNING, but no process runs it: the API died
    launcher = DirectLauncher(BatchActivities(engine, storage, 60_000_000), executor)
    report = await reconcile_once(engine, launcher, make_settings(db_url, storage), resume_running_direct=True)
    assert inp.batch_id in report.started
    await asyncio.gather(*launcher.tasks.values())
    assert [job.status for job in jobs_of_batch(engine, inp.batch_id)] == [JobStatus.COMPLETED] * 2
    assert balance(engine, user.id) == 16
