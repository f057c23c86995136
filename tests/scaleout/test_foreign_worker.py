"""A worker started on another database, on the same Temporal task queues, takes no live work: every task of a
batch its database does not hold is refused before it runs (no row of either database changes), and the batch
completes on its own deployment's worker with exactly what it was charged."""

import asyncio
from pathlib import Path

import pytest
from sqlmodel import Session, func, select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from db.migrate import upgrade
from db.models import BatchStatus, EnhancementJob, JobStatus, TokenTransaction
from db.session import make_engine
from services.deployment import FOREIGN_TASK_ERROR, claim_storage
from storage.local import LocalStorage
from tests.conftest import eventually, temporal_address, temporal_api, temporal_worker
from tests.db_helpers import assert_balance_matches_ledger, balance, batch_row, jobs_of_batch, ledger_entries
from tests.factories import make_album_with_images
from worker import running_workers, worker_activities

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def refused_by_the_foreign_worker(client: Client, batch_id: str) -> bool:
    handle: WorkflowHandle = client.get_workflow_handle(batch_id)
    described = await handle.describe()
    return any(
        FOREIGN_TASK_ERROR in str(pending.last_failure) for pending in described.raw_description.pending_activities
    )


async def test_a_worker_on_another_database_touches_no_batch(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    # Many attempts: a refused task goes back to the queue, and this test makes the stray worker meet it first.
    with temporal_api(temporal_env.client, primary_db_url, storage, activity_max_attempts=1000) as h:
        other_engine = make_engine(f"sqlite:///{tmp_path / 'elsewhere.db'}")
        upgrade(other_engine)
        other_storage = LocalStorage(tmp_path / "elsewhere")
        claim_storage(other_engine, other_storage)
        user, album, _ = make_album_with_images(h.engine, storage, 2, tokens=100)
        # A process of its own would have its own connection: so has the stray worker here.
        stray_client = await Client.connect(temporal_address(temporal_env.client))
        stray = worker_activities(other_engine, other_storage, h.settings, stray_client)
        async with running_workers(stray_client, h.settings, stray):
            async with h.async_http() as http:
                started = await http.post(
                    f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"}
                )
            assert started.status_code == 200, started.text
            batch_id = started.json()["batchId"]
            # Only the stray worker serves the queue: it met the batch's first task and refused it.
            deadline = asyncio.get_running_loop().time() + 60
            while not await refused_by_the_foreign_worker(temporal_env.client, batch_id):
                assert asyncio.get_running_loop().time() < deadline, "the stray worker never met the batch"
                await asyncio.sleep(0.1)
            assert [job.status for job in jobs_of_batch(h.engine, batch_id)] == [JobStatus.PENDING] * 2
            assert balance(h.engine, user.id) == 100 - 4
            # Now the batch's own worker joins: the tasks reach it, whichever worker they are offered to first.
            async with temporal_worker(h):
                await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED, within=120)
    jobs = jobs_of_batch(h.engine, batch_id)
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 2
    assert all(job.tokens_refunded == 0 for job in jobs)
    assert balance(h.engine, user.id) == 100 - 4
    assert_balance_matches_ledger(h.engine, user.id)
    assert len(ledger_entries(h.engine, user.id)) == 2  # the grant and the charge: no refund anywhere
    with Session(other_engine) as session:  # the other database was never written to
        assert session.exec(select(func.count()).select_from(EnhancementJob)).one() == 0
        assert session.exec(select(func.count()).select_from(TokenTransaction)).one() == 0
    assert not list(other_storage.root.rglob("*.jpg"))
