"""Fair turns on the super-resolution queue: another user's small batch is not starved by big ones. One SR process
serves the queue, so every image waits for its turn there, and Temporal's fairness keys (the batch's user) decide
the turns. A user's batches run one image at a time each: a single big batch has one image waiting at a time,
and arrival order would serve the small batch fairly anyway; several big batches of one user fill the queue, and
arrival order then serves each small image after one of each of theirs (12 big images before the small batch is
done, measured without fairness), where fair turns serve it after 2-3."""

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage
from temporalio.testing import WorkflowEnvironment

from core.vocabulary import BatchStatus, JobStatus
from storage.local import LocalStorage
from tests.conftest import Harness, eventually, temporal_stack
from tests.db_helpers import assert_balance_matches_ledger, batch_row, jobs_of_batch
from tests.factories import UserWithKey, make_album, make_user

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("sr_runtime")]

# 96 x 12 px to TIER_1K: three 2x passes over 6 small tiles, about a second of CPU; the network runs for each.
THIN = (96, 12)
SETTINGS: dict[str, object] = {"enhance_engine": "sr", "sr_processes": 1}


def thin_photo(n: int) -> bytes:
    image = PILImage.new("RGB", THIN, (40 + 9 * n % 200, 90, 160))
    for x in range(THIN[0]):
        image.putpixel((x, THIN[1] // 2), (x * 2, 255 - x * 2, 30))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


async def start_batch(h: Harness, user: UserWithKey, images: int) -> str:
    album = make_album(h.engine, user)
    files = [("files", (f"p{n}.jpg", thin_photo(n), "image/jpeg")) for n in range(images)]
    async with h.async_http() as http:
        uploaded = await http.post(f"/api/albums/{album}/images", headers=user.headers, files=files)
        assert uploaded.status_code == 201, uploaded.text
        started = await http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"})
    assert started.status_code == 200 and started.json()["queued"] == images, started.text
    return str(started.json()["batchId"])


BIG_BATCHES, BIG_IMAGES, SMALL_IMAGES = 6, 20, 2


async def test_a_small_batch_of_another_user_is_not_starved_by_big_ones(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    async with temporal_stack(temporal_env.client, primary_db_url, LocalStorage(tmp_path / "s"), None, **SETTINGS) as h:
        big_user, small_user = make_user(h.engine, tokens=1000), make_user(h.engine, tokens=100)
        bigs = [await start_batch(h, big_user, BIG_IMAGES) for _ in range(BIG_BATCHES)]
        small = await start_batch(h, small_user, SMALL_IMAGES)
        await eventually(lambda: batch_row(h.engine, small).status == BatchStatus.COMPLETED, within=300)
        small_jobs = jobs_of_batch(h.engine, small)
        assert [job.status for job in small_jobs] == [JobStatus.COMPLETED] * SMALL_IMAGES
        small_done = max(job.finished_at for job in small_jobs if job.finished_at is not None)
        big_done_before = [
            job
            for batch_id in bigs
            for job in jobs_of_batch(h.engine, batch_id)
            if job.status == JobStatus.COMPLETED and job.finished_at is not None and job.finished_at < small_done
        ]
        async with h.async_http() as http:
            for batch_id in bigs:
                assert (await http.post(f"/api/batches/{batch_id}/cancel", headers=big_user.headers)).status_code in (
                    202,
                    409,
                )
        ended = (BatchStatus.CANCELLED, BatchStatus.COMPLETED)
        await eventually(lambda: all(batch_row(h.engine, b).status in ended for b in bigs), within=120)
        assert len(big_done_before) < 10, f"the small batch finished after {len(big_done_before)} big images"
        for user in (big_user, small_user):
            assert_balance_matches_ledger(h.engine, user.id)
