"""BatchEnhanceWorkflow on a real Temporal dev server, driven over real HTTP and with the real `temporal` CLI."""

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image as PILImage
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.contracts import BatchResult
from core.temporal_dev import temporal_binary
from db.models import BatchStatus, JobStatus
from tests.conftest import Harness, eventually, temporal_address, temporal_stack
from tests.db_helpers import (
    assert_balance_matches_ledger,
    balance,
    batch_row,
    jobs_of_batch,
    original_key_of,
    refunds_for_job,
)
from tests.factories import UserWithKey, make_album, make_album_with_images, make_image, make_user, photo_bytes
from tests.storage_faults import FlakyStorage, GatedStorage
from workflows.batch_enhance import BatchEnhanceWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def start_batch(h: Harness, album_id: str, headers: dict[str, str], tier: str = "TIER_1K") -> dict:
    async with h.async_http() as http:
        response = await http.post(f"/api/albums/{album_id}/enhance", headers=headers, json={"tier": tier})
    assert response.status_code == 200, response.text
    return response.json()


async def temporal_cli(env: WorkflowEnvironment, *args: str) -> str:
    """Run the real `temporal` CLI against the test server."""
    process = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        "--address",
        temporal_address(env.client),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


def workflow_handle(h: Harness, batch_id: str) -> WorkflowHandle[BatchEnhanceWorkflow, BatchResult]:
    assert h.temporal is not None
    return h.temporal.get_workflow_handle_for(BatchEnhanceWorkflow.run, batch_id)


async def start_gated_batch(
    h: Harness, storage: GatedStorage, images: int, gate_at: int
) -> tuple[UserWithKey, str, dict]:
    """Start a batch whose image `gate_at` blocks until released; returns once the batch is held there."""
    user, album, image_ids = make_album_with_images(h.engine, storage, images)
    storage.gate(original_key_of(h.engine, image_ids[gate_at]))
    body = await start_batch(h, album, user.headers)
    await eventually(storage.waiting.is_set)
    return user, album, body


@contextlib.asynccontextmanager
async def gated_stack(
    env: WorkflowEnvironment, db_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Harness, GatedStorage]]:
    storage = GatedStorage(tmp_path / "gated-storage")
    async with temporal_stack(env.client, db_url, storage) as harness:
        yield harness, storage


async def test_corrupt_image_fails_alone_and_is_refunded_once(temporal_harness: Harness) -> None:
    h = temporal_harness
    user = make_user(h.engine, tokens=100)
    album = make_album(h.engine, user)
    good = make_image(h.engine, h.storage, album, photo_bytes("rocket.jpg"), sort_order=0)
    corrupt = make_image(h.engine, h.storage, album, b"\xff\xd8\xff\xe0 this is not really a jpeg", sort_order=1)
    other = make_image(h.engine, h.storage, album, photo_bytes("chelsea.png"), sort_order=2)

    body = await start_batch(h, album, user.headers)
    result = await workflow_handle(h, body["batchId"]).result()

    assert (result.completed, result.failed, result.cancelled, result.tokens_refunded) == (2, 1, 0, 2)
    jobs = {job.image_id: job for job in jobs_of_batch(h.engine, body["batchId"])}
    assert jobs[corrupt].status == JobStatus.FAILED and jobs[corrupt].tokens_refunded == 2
    assert jobs[corrupt].attempts == 1, "an invalid image must not be retried"
    assert "Enhancement failed" in (jobs[corrupt].error_message or "")
    assert refunds_for_job(h.engine, jobs[corrupt].id) == 1
    for image_id in (good, other):
        job = jobs[image_id]
        assert job.status == JobStatus.COMPLETED and job.tokens_refunded == 0
        with PILImage.open(io.BytesIO(h.storage.get(job.enhanced_key or ""))) as enhanced:
            assert enhanced.format == "JPEG"
            assert max(enhanced.size) == 1024
            assert (enhanced.width, enhanced.height) == (job.enhanced_width, job.enhanced_height)
    assert balance(h.engine, user.id) == 100 - 6 + 2
    assert_balance_matches_ledger(h.engine, user.id)
    assert batch_row(h.engine, body["batchId"]).status == BatchStatus.COMPLETED

    async with h.async_http() as http:
        summary = (await http.get(f"/api/batches/{body['batchId']}", headers=user.headers)).json()
        result_file = await http.get(f"/api/jobs/{jobs[good].id}/result", headers=user.headers)
    assert (summary["completed"], summary["failed"], summary["pending"], summary["tokensRefunded"]) == (2, 1, 0, 2)
    assert result_file.status_code == 200 and result_file.headers["content-type"] == "image/jpeg"


async def test_temporal_cli_cancel_mid_batch_refunds_the_rest(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    async with gated_stack(temporal_env, primary_db_url, tmp_path) as (h, storage):
        user, album, body = await start_gated_batch(h, storage, images=4, gate_at=1)

        await temporal_cli(temporal_env, "workflow", "cancel", "-w", body["batchId"])
        handle = workflow_handle(h, body["batchId"])
        with pytest.raises(WorkflowFailureError):
            await handle.result()

        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        jobs = jobs_of_batch(h.engine, body["batchId"])
        assert [job.status for job in jobs] == [JobStatus.COMPLETED] + [JobStatus.CANCELLED] * 3
        assert [job.tokens_refunded for job in jobs] == [0, 2, 2, 2]
        assert all(refunds_for_job(h.engine, job.id) == (0 if i == 0 else 1) for i, job in enumerate(jobs))
        assert batch_row(h.engine, body["batchId"]).status == BatchStatus.CANCELLED
        assert balance(h.engine, user.id) == 100 - 8 + 6
        assert_balance_matches_ledger(h.engine, user.id)


async def test_pause_resume_and_progress_query_from_the_cli(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    async with gated_stack(temporal_env, primary_db_url, tmp_path) as (h, storage):
        user, album, body = await start_gated_batch(h, storage, images=3, gate_at=0)
        batch_id = body["batchId"]

        await temporal_cli(temporal_env, "workflow", "signal", "-w", batch_id, "--name", "pause")
        # The first image is still held in storage, and the batch already says PAUSED, on its row and to operators.
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.PAUSED)
        assert not storage.release.is_set()
        shown = await workflow_handle(h, batch_id).query(BatchEnhanceWorkflow.progress)
        assert shown.status == "PAUSED" and shown.details.startswith("Pausing: finishing image 1 of 3")
        assert "Pausing: finishing image 1 of 3" in await temporal_cli(
            temporal_env, "workflow", "metadata", "-w", batch_id
        )
        storage.release.set()

        async def progress() -> dict:
            out = await temporal_cli(
                temporal_env, "workflow", "query", "-w", batch_id, "--type", "progress", "-o", "json"
            )
            return json.loads(out)["queryResult"][0]

        snapshot = await progress()
        while snapshot["completed"] < 1:
            await asyncio.sleep(0.1)
            snapshot = await progress()
        assert snapshot["paused"] is True and snapshot["pending"] == 2 and snapshot["total"] == 3
        assert [job.status for job in jobs_of_batch(h.engine, batch_id)][1:] == [JobStatus.PENDING] * 2

        listed = await temporal_cli(temporal_env, "workflow", "list", "--query", f'AlbumId="{album}"', "-o", "json")
        assert batch_id in listed

        await temporal_cli(temporal_env, "workflow", "signal", "-w", batch_id, "--name", "resume")
        result = await workflow_handle(h, batch_id).result()
        assert (result.status, result.completed) == ("COMPLETED", 3)
        assert all(job.status == JobStatus.COMPLETED for job in jobs_of_batch(h.engine, batch_id))


async def test_cancel_signal_stops_the_current_image_and_completes(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    async with gated_stack(temporal_env, primary_db_url, tmp_path) as (h, storage):
        user, album, body = await start_gated_batch(h, storage, images=3, gate_at=0)

        await temporal_cli(temporal_env, "workflow", "signal", "-w", body["batchId"], "--name", "cancel")
        handle = workflow_handle(h, body["batchId"])
        result = await handle.result()

        assert (result.status, result.completed, result.cancelled, result.tokens_refunded) == ("CANCELLED", 0, 3, 6)
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        assert balance(h.engine, user.id) == 100
        assert_balance_matches_ledger(h.engine, user.id)


async def test_rest_cancel_signals_the_workflow(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    async with gated_stack(temporal_env, primary_db_url, tmp_path) as (h, storage):
        user, album, body = await start_gated_batch(h, storage, images=3, gate_at=0)

        async with h.async_http() as http:
            response = await http.post(f"/api/batches/{body['batchId']}/cancel", headers=user.headers)
        assert response.status_code == 202
        result = await workflow_handle(h, body["batchId"]).result()
        assert (result.status, result.cancelled) == ("CANCELLED", 3)
        jobs = jobs_of_batch(h.engine, body["batchId"])
        assert all(job.status == JobStatus.CANCELLED and job.tokens_refunded == 2 for job in jobs)
        assert balance(h.engine, user.id) == 100
        assert_balance_matches_ledger(h.engine, user.id)


async def test_transient_storage_errors_are_retried(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    storage = FlakyStorage(tmp_path / "flaky", failures=2)
    async with temporal_stack(temporal_env.client, primary_db_url, storage) as h:
        user, album, _ = make_album_with_images(h.engine, h.storage, 1)
        body = await start_batch(h, album, user.headers)
        result = await workflow_handle(h, body["batchId"]).result()
        [job] = jobs_of_batch(h.engine, body["batchId"])
        assert (result.completed, job.status, job.attempts) == (1, JobStatus.COMPLETED, 3)
        assert balance(h.engine, user.id) == 98


async def test_lasting_storage_failure_fails_and_refunds_once(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    storage = FlakyStorage(tmp_path / "broken", failures=None)
    async with temporal_stack(temporal_env.client, primary_db_url, storage) as h:
        user, album, _ = make_album_with_images(h.engine, h.storage, 2)
        body = await start_batch(h, album, user.headers)
        result = await workflow_handle(h, body["batchId"]).result()
        jobs = jobs_of_batch(h.engine, body["batchId"])
        assert (result.failed, result.tokens_refunded) == (2, 4)
        assert all(job.status == JobStatus.FAILED and job.attempts == 3 for job in jobs)
        assert all(refunds_for_job(h.engine, job.id) == 1 for job in jobs)
        assert balance(h.engine, user.id) == 100
        assert_balance_matches_ledger(h.engine, user.id)
