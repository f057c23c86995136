"""The batch activities on their own: idempotent under retries and races, refunds exactly once."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlmodel import Session
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.batch import BatchActivities, DirectJobControl
from core.contracts import CloseJobInput, JobInterrupted, ProcessJobInput
from core.vocabulary import INVALID_IMAGE_ERROR
from db.models import EnhancementJob, JobStatus, Tier
from storage.local import LocalStorage
from tests.conftest import engine_for, wait_until
from tests.db_helpers import assert_balance_matches_ledger, balance, refunds_for_job
from tests.factories import make_album, make_image, make_pending_job, make_user, photo_bytes
from tests.storage_faults import WriteGatedStorage


@pytest.fixture
def activities(db_url: str, tmp_path: Path) -> BatchActivities:
    return BatchActivities(engine_for(db_url), LocalStorage(tmp_path / "storage"), 60_000_000)


def pending_job(
    activities: BatchActivities, data: bytes, tier: Tier = Tier.TIER_1K, tokens: int = 10
) -> tuple[str, str]:
    user = make_user(activities.engine, tokens=tokens)
    album = make_album(activities.engine, user)
    image = make_image(activities.engine, activities.storage, album, data)
    return user.id, make_pending_job(activities.engine, user, album, image, tier, cost=2)


def job(activities: BatchActivities, job_id: str) -> EnhancementJob:
    with Session(activities.engine) as session:
        return session.get_one(EnhancementJob, job_id)


def test_process_job_enhances_and_is_idempotent(activities: BatchActivities) -> None:
    _, job_id = pending_job(activities, photo_bytes("rocket.jpg"), Tier.TIER_2K)
    env = ActivityEnvironment()
    first = env.run(activities.process_job, ProcessJobInput(job_id))
    second = env.run(activities.process_job, ProcessJobInput(job_id))
    assert first == second
    assert (first.status, first.width, first.height) == (JobStatus.COMPLETED, 2048, 1366)
    row = job(activities, job_id)
    assert row.attempts == 1, "a completed job is not processed again"
    with PILImage.open(io.BytesIO(activities.storage.get(row.enhanced_key or ""))) as out:
        assert out.size == (2048, 1366)
        assert len(activities.storage.get(row.enhanced_key or "")) == row.enhanced_size_bytes


def test_invalid_image_is_a_non_retryable_error(activities: BatchActivities) -> None:
    _, job_id = pending_job(activities, b"GIF89a but nothing else")
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(activities.process_job, ProcessJobInput(job_id))
    assert raised.value.non_retryable and raised.value.type == INVALID_IMAGE_ERROR
    assert job(activities, job_id).status == JobStatus.PROCESSING


def test_close_refunds_once_however_often_it_runs(activities: BatchActivities) -> None:
    user_id, job_id = pending_job(activities, photo_bytes("rocket.jpg"))
    results = [activities.close_job(CloseJobInput(job_id, "FAILED", "boom")) for _ in range(3)]
    assert [r.tokens_refunded for r in results] == [2, 0, 0]
    assert all(r.status == JobStatus.FAILED for r in results)
    assert refunds_for_job(activities.engine, job_id) == 1
    assert balance(activities.engine, user_id) == 12
    assert_balance_matches_ledger(activities.engine, user_id)


def test_a_closed_job_is_never_completed_afterwards(activities: BatchActivities) -> None:
    _, job_id = pending_job(activities, photo_bytes("rocket.jpg"))
    activities.close_job(CloseJobInput(job_id, "CANCELLED", "cancelled"))
    result = ActivityEnvironment().run(activities.process_job, ProcessJobInput(job_id))
    assert result.status == JobStatus.CANCELLED
    row = job(activities, job_id)
    assert row.enhanced_key is None and row.tokens_refunded == 2


def test_completed_job_cannot_be_refunded(activities: BatchActivities) -> None:
    user_id, job_id = pending_job(activities, photo_bytes("rocket.jpg"))
    ActivityEnvironment().run(activities.process_job, ProcessJobInput(job_id))
    closed = activities.close_job(CloseJobInput(job_id, "CANCELLED", "too late"))
    assert (closed.status, closed.tokens_refunded) == (JobStatus.COMPLETED, 0)
    assert balance(activities.engine, user_id) == 10


def test_a_job_waits_for_an_engine_thread_and_still_notices_a_cancel(db_url: str, tmp_path: Path) -> None:
    gated = BatchActivities(
        engine_for(db_url), LocalStorage(tmp_path / "storage"), 60_000_000, heartbeat_interval=0.02, engine_threads=1
    )
    _, waiting_job = pending_job(gated, photo_bytes("rocket.jpg"))
    _, later_job = pending_job(gated, photo_bytes("rocket.jpg"))
    assert gated._engine_gate is not None
    gated._engine_gate.acquire()  # the one engine thread is busy with another image
    cancelled = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        waiting = pool.submit(gated.enhance_job, ProcessJobInput(waiting_job), DirectJobControl(cancelled, 60), "b")
        later = pool.submit(gated.enhance_job, ProcessJobInput(later_job), DirectJobControl(threading.Event(), 60), "b")
        wait_until(lambda: job(gated, waiting_job).status == JobStatus.PROCESSING)
        wait_until(lambda: job(gated, later_job).status == JobStatus.PROCESSING)
        assert not waiting.done() and not later.done(), "neither enhances while the engine thread is taken"
        cancelled.set()
        with pytest.raises(JobInterrupted):
            waiting.result(timeout=10)
        gated._engine_gate.release()
        assert later.result(timeout=60).status == JobStatus.COMPLETED
    assert job(gated, waiting_job).status == JobStatus.PROCESSING, "interrupted: left for the driver to close"


def test_hostile_metadata_is_logged_and_the_image_completes(
    activities: BatchActivities, caplog: pytest.LogCaptureFixture
) -> None:
    plain = photo_bytes("rocket.jpg")
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&a;</x:xmpmeta>'
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + bomb
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    _, job_id = pending_job(activities, plain[:2] + segment + plain[2:])
    with caplog.at_level("WARNING", logger="activities.batch"):
        result = ActivityEnvironment().run(
            activities.process_job, ProcessJobInput(job_id, output_format="png", keep_location=False)
        )
    assert result.status == JobStatus.COMPLETED
    assert f"job {job_id}: metadata: XMP unreadable" in caplog.text
    row = job(activities, job_id)
    assert (row.enhanced_key or "").endswith(".png") and row.enhanced_format == "image/png"
    with PILImage.open(io.BytesIO(activities.storage.get(row.enhanced_key or ""))) as out:
        assert out.format == "PNG" and out.size == (1024, 683)


def test_an_attempt_that_loses_to_an_overlapping_one_keeps_the_winners_result(db_url: str, tmp_path: Path) -> None:
    """The first attempt stalls while storing its result (past its heartbeat timeout, so Temporal starts a retry);
    the retry completes the job; the first then finds the job completed and deletes only its own object."""
    storage = WriteGatedStorage(tmp_path / "storage", "enhanced/")
    activities = BatchActivities(engine_for(db_url), storage, 60_000_000)
    _, job_id = pending_job(activities, photo_bytes("rocket.jpg"))
    with ThreadPoolExecutor(1) as pool:
        stalled = pool.submit(ActivityEnvironment().run, activities.process_job, ProcessJobInput(job_id))
        assert storage.waiting.wait(60)  # the first attempt is about to store its result
        retry = ActivityEnvironment().run(activities.process_job, ProcessJobInput(job_id))
        assert retry.status == JobStatus.COMPLETED
        storage.release.set()
        late = stalled.result(60)
    assert late == retry
    row = job(activities, job_id)
    assert (row.status, row.attempts, row.enhanced_key) == (JobStatus.COMPLETED, 2, f"enhanced/{job_id}-a2.jpg")
    assert len(storage.get(row.enhanced_key or "")) == row.enhanced_size_bytes
    assert not storage.exists(f"enhanced/{job_id}-a1.jpg")
    assert sorted(p.name for p in (storage.root / "enhanced").iterdir()) == [f"{job_id}-a2.jpg"]
