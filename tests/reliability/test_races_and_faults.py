"""Concurrent enhance requests by one user, and a database failing inside an activity."""

import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from activities.batch import BatchActivities
from db.models import EnhancementJob, JobStatus, LedgerType
from db.session import make_engine
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, make_settings, temporal_address, wait_until
from tests.db_helpers import (
    assert_balance_matches_ledger,
    balance,
    batch_row,
    jobs_of_batch,
    ledger_entries,
    refunds_for_job,
)
from tests.factories import make_album, make_album_with_images, make_images, make_user
from worker import running_workers
from workflows.batch_enhance import BatchEnhanceWorkflow

ALBUMS, IMAGES_PER_ALBUM, REQUESTS = 5, 4, 50


def test_fifty_concurrent_requests_never_overdraw_or_double_charge(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine, tokens=60)  # enough for 3 of the 5 albums at TIER_2K (4 x 5 tokens each)
    albums = [make_album(h.engine, user, name=f"album {i}") for i in range(ALBUMS)]
    for album in albums:
        make_images(h.engine, h.storage, album, IMAGES_PER_ALBUM)
    barrier = threading.Barrier(REQUESTS)

    def send(album: str) -> httpx.Response:
        with httpx.Client(base_url=h.api.base_url, timeout=60) as http:
            barrier.wait()
            return http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_2K"})

    targets = list(itertools.islice(itertools.cycle(albums), REQUESTS))
    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        responses = list(pool.map(send, targets))

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 402}, statuses
    charged = [r.json() for r in responses if r.status_code == 200 and r.json()["queued"] > 0]
    assert len(charged) == 3 and all(body["totalCost"] == 20 for body in charged)
    assert all(body["newBalance"] >= 0 for body in charged)
    consumed = ledger_entries(h.engine, user.id, LedgerType.CONSUME)
    assert sum(entry.amount for entry in consumed) == -60
    with Session(h.engine) as session:
        jobs = session.exec(select(EnhancementJob).where(col(EnhancementJob.user_id) == user.id)).all()
    per_image = Counter(job.image_id for job in jobs)
    assert len(per_image) == 12 and max(per_image.values()) == 1, "an image was charged twice at one tier"
    batch_ids = {body["batchId"] for body in charged}
    wait_until(lambda: all(batch_row(h.engine, b).status == "COMPLETED" for b in batch_ids))
    assert balance(h.engine, user.id) == 0
    assert_balance_matches_ledger(h.engine, user.id)


class DatabaseFaults:
    """Makes the claim of an image job (the UPDATE that counts attempts) fail on a real connection."""

    def __init__(self, engine: Engine, failures: int | None) -> None:
        self.failures, self.seen = failures, 0
        event.listen(engine, "before_cursor_execute", self._maybe_fail)

    def _maybe_fail(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE enhancement_job") and "attempts" in statement:
            self.seen += 1
            if self.failures is None or self.seen <= self.failures:
                raise OperationalError(statement, None, ConnectionError("database went away (injected)"))


@pytest.fixture
def faulty_engine(primary_db_url: str) -> Iterator[Engine]:
    engine = make_engine(primary_db_url)
    yield engine
    engine.dispose()


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("failures", [2, None], ids=["brief-outage", "lasting-outage"])
async def test_database_failing_inside_an_activity(
    temporal_env: WorkflowEnvironment, primary_db_url: str, faulty_engine: Engine, tmp_path: Path, failures: int | None
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(
        primary_db_url, storage, execution_mode="temporal", temporal_address=temporal_address(temporal_env.client)
    )
    faults = DatabaseFaults(faulty_engine, failures)
    activities = BatchActivities(faulty_engine, storage, settings.max_image_pixels)
    engine = make_engine(primary_db_url)
    user, album, _ = make_album_with_images(engine, storage, 2, tokens=100)
    async with running_workers(temporal_env.client, settings, activities):
        with LiveServer(settings) as api:
            async with httpx.AsyncClient(base_url=api.base_url) as http:
                response = await http.post(
                    f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"}
                )
            batch_id = response.json()["batchId"]
            handle = temporal_env.client.get_workflow_handle_for(BatchEnhanceWorkflow.run, batch_id)
            result = await handle.result()
    jobs = jobs_of_batch(engine, batch_id)
    if failures is not None:
        assert (result.completed, faults.seen) == (2, 4)
        assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 2
        assert balance(engine, user.id) == 96
    else:
        assert (result.failed, result.tokens_refunded) == (2, 4)
        assert all(job.status == JobStatus.FAILED and refunds_for_job(engine, job.id) == 1 for job in jobs)
        assert faults.seen == 2 * settings.activity_max_attempts
        assert balance(engine, user.id) == 100
    assert_balance_matches_ledger(engine, user.id)
    engine.dispose()
