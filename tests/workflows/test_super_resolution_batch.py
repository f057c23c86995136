"""Super-resolution in a real batch on a real Temporal dev server: images the network enlarges run on the SR task
queue, their tile position shows on the job and in the progress query, and a cancel lands at the next tile."""

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from core.vocabulary import Activity, BatchStatus, JobStatus
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, eventually, make_settings, temporal_stack
from tests.db_helpers import assert_balance_matches_ledger, balance, batch_row, jobs_of_batch, refunds_for_job
from tests.factories import FIXTURES, UserWithKey, make_album, make_user
from workflows.batch_enhance import BatchEnhanceWorkflow

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("sr_runtime")]
SR_SETTINGS: dict[str, object] = {
    "enhance_engine": "sr",
    "sr_tile_size": 32,
    "activity_progress_interval_seconds": 0.1,
}


def photo_crop(width: int, height: int) -> bytes:
    with PILImage.open(FIXTURES / "astronaut.png") as image:
        out = io.BytesIO()
        image.convert("RGB").crop((0, 0, width, height)).save(out, "JPEG", quality=92)
        return out.getvalue()


async def album_with_photos(h: Harness, sizes: list[tuple[int, int]]) -> tuple[UserWithKey, str]:
    """Upload real photos through the API, so their stored sizes are real (the routing reads them)."""
    user = make_user(h.engine, tokens=100)
    album = make_album(h.engine, user)
    files = [("files", (f"p{n}.jpg", photo_crop(*size), "image/jpeg")) for n, size in enumerate(sizes)]
    async with h.async_http() as http:
        uploaded = await http.post(f"/api/albums/{album}/images", headers=user.headers, files=files)
    assert uploaded.status_code == 201, uploaded.text
    return user, album


async def enhance(h: Harness, user: UserWithKey, album: str, tier: str) -> str:
    async with h.async_http() as http:
        response = await http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": tier})
    assert response.status_code == 200, response.text
    return str(response.json()["batchId"])


def at_a_tile(h: Harness, batch_id: str) -> bool:
    step = jobs_of_batch(h.engine, batch_id)[0].progress
    return step is not None and step.startswith("tile ")


def assert_stopped_between_tiles_and_refunded(h: Harness, user: UserWithKey, batch_id: str) -> None:
    """The first image stopped between tiles (its last step a tile short of the end, no result stored), and both
    images were refunded once."""
    jobs = jobs_of_batch(h.engine, batch_id)
    done, _, total = (jobs[0].progress or "").removeprefix("tile ").partition(" of ")
    assert int(done) < int(total) and jobs[0].enhanced_key is None
    assert all(refunds_for_job(h.engine, job.id) == 1 for job in jobs)
    assert balance(h.engine, user.id) == 100
    assert_balance_matches_ledger(h.engine, user.id)


async def image_task_queues(h: Harness, batch_id: str) -> list[str]:
    assert h.temporal is not None
    queues = []
    async for event in h.temporal.get_workflow_handle(batch_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == Activity.PROCESS_JOB:
                queues.append(attributes.task_queue.name)
    return queues


async def test_enlarged_images_run_on_the_sr_queue_and_show_their_tiles(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    async with temporal_stack(temporal_env.client, primary_db_url, storage, None, **SR_SETTINGS) as h:
        # 400x300 to 1K enlarges 2.56x (the network); 1200x900 to 1K shrinks (classic, the batch queue).
        user, album = await album_with_photos(h, [(400, 300), (1200, 900)])
        batch_id = await enhance(h, user, album, "TIER_1K")
        seen_steps: set[str] = set()

        def finished() -> bool:
            jobs = jobs_of_batch(h.engine, batch_id)
            seen_steps.update(job.progress for job in jobs if job.progress)
            return batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED

        await eventually(finished, within=120, interval=0.02)
        jobs = jobs_of_batch(h.engine, batch_id)
        assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 2
        assert [(job.enhanced_width, job.enhanced_height) for job in jobs] == [(1024, 768), (1024, 768)]
        assert any(step.startswith("tile ") for step in seen_steps), seen_steps
        assert await image_task_queues(h, batch_id) == [h.settings.sr_task_queue, h.settings.task_queue]


async def test_a_cancel_lands_at_the_next_tile(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    async with temporal_stack(temporal_env.client, primary_db_url, storage, None, **SR_SETTINGS) as h:
        user, album = await album_with_photos(h, [(600, 400), (600, 400)])
        batch_id = await enhance(h, user, album, "TIER_2K")
        assert h.temporal is not None
        handle = h.temporal.get_workflow_handle_for(BatchEnhanceWorkflow.run, batch_id)
        first = jobs_of_batch(h.engine, batch_id)[0].id

        await eventually(lambda: at_a_tile(h, batch_id), within=60, interval=0.02)
        progress = await handle.query(BatchEnhanceWorkflow.progress)
        assert progress.current_job_id == first
        async with h.async_http() as http:
            cancelled = await http.post(f"/api/batches/{batch_id}/cancel", headers=user.headers)
        assert cancelled.status_code == 202
        result = await handle.result()

        assert (result.status, result.completed, result.cancelled, result.tokens_refunded) == ("CANCELLED", 0, 2, 10)
        assert_stopped_between_tiles_and_refunded(h, user, batch_id)


async def test_two_batches_enlarge_at_the_same_time_in_two_processes(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = SR_SETTINGS | {"sr_processes": 2}
    async with temporal_stack(temporal_env.client, primary_db_url, storage, None, **settings) as h:
        # 200x150 to 1K: two passes over 150 tiles of 32 px, seconds of work for each image.
        albums = [await album_with_photos(h, [(200, 150)]) for _ in range(2)]
        batches = [await enhance(h, user, album, "TIER_1K") for user, album in albums]
        await eventually(lambda: all(batch_row(h.engine, b).status == BatchStatus.COMPLETED for b in batches), 300)
        first, second = (jobs_of_batch(h.engine, b)[0] for b in batches)
        assert first.started_at and first.finished_at and second.started_at and second.finished_at
        # Each started before the other finished: both enlarged at once, each in a process of its own.
        assert first.started_at < second.finished_at and second.started_at < first.finished_at


async def test_direct_mode_enlarges_in_processes_too_and_a_cancel_lands_at_the_next_tile(
    primary_db_url: str, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(primary_db_url, storage, direct_poll_interval_seconds=0.05, **SR_SETTINGS)
    with LiveServer(settings, storage=storage) as api:
        h = Harness(settings, engine_for(primary_db_url), storage, api)
        user, album = await album_with_photos(h, [(600, 400), (600, 400)])
        batch_id = await enhance(h, user, album, "TIER_2K")

        await eventually(lambda: at_a_tile(h, batch_id), within=60, interval=0.02)
        async with h.async_http() as http:
            assert (await http.post(f"/api/batches/{batch_id}/cancel", headers=user.headers)).status_code == 202
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.CANCELLED, within=60)
        await eventually(lambda: all(j.status == JobStatus.CANCELLED for j in jobs_of_batch(h.engine, batch_id)))
        assert_stopped_between_tiles_and_refunded(h, user, batch_id)
