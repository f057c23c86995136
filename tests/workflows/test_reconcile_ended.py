"""The reconciler closes a RUNNING or PAUSED row whose workflow has ended without recording it (terminated,
completed by a worker of another database, or gone), with one refund per job it left in flight, and leaves
live ones alone."""

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from db.models import BatchStatus, EnhancementJob, JobStatus, Tier
from db.session import session_scope
from services.batches import batch_input, mark_started
from services.launcher import TemporalLauncher
from services.reconciler import reconcile_once
from storage.local import LocalStorage
from tests.conftest import engine_for, make_settings, temporal_address
from tests.db_helpers import assert_balance_matches_ledger, balance, batch_row, jobs_of_batch, refunds_for_job
from tests.factories import charge_batch, make_album_with_images

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_rows_behind_ended_workflows_are_closed_with_exact_refunds(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    # No worker serves this queue: the workflows never run a step, their rows stay RUNNING.
    settings = make_settings(
        primary_db_url,
        storage,
        execution_mode="temporal",
        temporal_address=temporal_address(temporal_env.client),
        reconcile_grace_seconds=0,
    )
    engine = engine_for(primary_db_url)
    launcher = TemporalLauncher(temporal_env.client, settings.task_queue, 10)
    batches = {}
    for case in ("terminated", "gone", "live"):
        user, album, _ = make_album_with_images(engine, storage, 2, tokens=100)
        with session_scope(engine) as session:
            planned = charge_batch(session, user.id, album, Tier.TIER_2K, execution_mode="temporal")
            assert planned.batch is not None
            batch_id = planned.batch.id
            inp = batch_input(session, planned.batch, settings)
        if case != "gone":
            await launcher.start(inp)
        with session_scope(engine) as session:
            mark_started(session, batch_id)
        if case == "terminated":
            # The first image had been completed before the workflow was terminated.
            with session_scope(engine) as session:
                session.get_one(EnhancementJob, planned.jobs[0].id).status = JobStatus.COMPLETED
        batches[case] = (user, batch_id)
    await temporal_env.client.get_workflow_handle(batches["terminated"][1]).terminate("operator")

    report = await reconcile_once(engine, launcher, settings, ended_status=launcher.ended_status)

    assert sorted(report.repaired) == sorted(batches[case][1] for case in ("terminated", "gone"))
    expected = {
        "terminated": (BatchStatus.FAILED, [JobStatus.COMPLETED, JobStatus.FAILED], 100 - 10 + 5),
        "gone": (BatchStatus.FAILED, [JobStatus.FAILED, JobStatus.FAILED], 100),
        "live": (BatchStatus.RUNNING, [JobStatus.PENDING, JobStatus.PENDING], 100 - 10),
    }
    for case, (status, job_statuses, tokens) in expected.items():
        user, batch_id = batches[case]
        assert batch_row(engine, batch_id).status == status, case
        jobs = jobs_of_batch(engine, batch_id)
        assert [job.status for job in jobs] == job_statuses, case
        assert all(refunds_for_job(engine, job.id) == (job.status == JobStatus.FAILED) for job in jobs), case
        assert balance(engine, batches[case][0].id) == tokens, case
        assert_balance_matches_ledger(engine, user.id)
    # A second pass changes nothing: refunds happen once.
    again = await reconcile_once(engine, launcher, settings, ended_status=launcher.ended_status)
    assert again.repaired == []
    assert balance(engine, batches["gone"][0].id) == 100
    await temporal_env.client.get_workflow_handle(batches["live"][1]).terminate("test over")
    await reconcile_once(engine, launcher, settings, ended_status=launcher.ended_status)
    assert batch_row(engine, batches["live"][1]).status == BatchStatus.FAILED
