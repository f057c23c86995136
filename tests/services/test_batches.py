"""Batch bookkeeping: batch ids, and closing a batch that was charged but not known to have started."""

import time
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col

from db.models import Batch, BatchStatus, EnhancementJob, JobStatus, Tier
from db.session import session_scope
from services.batches import SR_OVERHEAD_TILES, SR_START_SECONDS, close_unstarted, input_for
from services.enhance import new_batch_id
from storage.local import LocalStorage
from tests.conftest import engine_for, make_settings
from tests.db_helpers import assert_balance_matches_ledger, balance, jobs_of_batch
from tests.factories import charge_batch, make_album, make_images, make_user


def test_batch_ids_stay_unique_within_one_millisecond(db_url: str) -> None:
    engine = engine_for(db_url)
    user = make_user(engine)
    album = make_album(engine, user)
    now = time.time_ns() // 1_000_000
    taken = {f"album-{album}-{now + offset}" for offset in range(200)}
    with session_scope(engine) as session:
        for batch_id in taken:
            session.add(
                Batch(
                    id=batch_id,
                    album_id=album,
                    user_id=user.id,
                    tier=Tier.TIER_1K,
                    execution_mode="direct",
                    tokens_charged=0,
                )
            )
    with session_scope(engine) as session:
        fresh = new_batch_id(session, album)
    assert fresh not in taken
    assert fresh.startswith(f"album-{album}-") and int(fresh.rsplit("-", 1)[1]) >= now


def test_closing_an_unstarted_batch_never_refunds_a_job_in_processing(db_url: str, tmp_path: Path) -> None:
    engine = engine_for(db_url)
    user = make_user(engine, tokens=100)
    album = make_album(engine, user)
    make_images(engine, LocalStorage(tmp_path), album, 3)
    with session_scope(engine) as session:
        planned = charge_batch(session, user.id, album, execution_mode="temporal")
        assert planned.batch is not None
        batch_id, first_job = planned.batch.id, planned.jobs[0].id
    # A workflow did start after all and its activity holds the first job.
    with session_scope(engine) as session:
        session.exec(
            update(EnhancementJob).where(col(EnhancementJob.id) == first_job).values(status=JobStatus.PROCESSING)
        )
    with session_scope(engine) as session:
        refunded = close_unstarted(session, batch_id, BatchStatus.CANCELLED, "Batch cancelled")
    assert refunded == 4
    assert [job.status for job in jobs_of_batch(engine, batch_id)] == [
        JobStatus.PROCESSING,
        JobStatus.CANCELLED,
        JobStatus.CANCELLED,
    ]
    assert balance(engine, user.id) == 98
    with session_scope(engine) as session:
        assert close_unstarted(session, batch_id, BatchStatus.CANCELLED, "again") == 0
    assert_balance_matches_ledger(engine, user.id)


def test_an_sr_image_may_run_for_its_tiles_times_the_tile_time(db_url: str, tmp_path: Path) -> None:
    engine = engine_for(db_url)
    storage = LocalStorage(tmp_path)
    user = make_user(engine, tokens=100)
    album = make_album(engine, user)
    make_images(engine, storage, album, 2)  # 96 x 64 as stored: TIER_1K enlarges them 10.7x
    settings = make_settings(db_url, storage, enhance_engine="auto", sr_tile_seconds=7.0, sr_tile_size=128)
    with session_scope(engine) as session:
        planned = charge_batch(session, user.id, album)
        assert planned.batch is not None
        inp = input_for(planned.batch, planned.jobs, planned.to_enhance, settings)
        classic = input_for(planned.batch, planned.jobs, planned.to_enhance, make_settings(db_url, storage))
    # 96 x 64 to 1024: passes from 96 x 64, 192 x 128 and 384 x 256, in 128-px tiles: 1 + 2 + 6 = 9 tiles.
    assert inp.sr_job_ids == [job.id for job in planned.jobs]
    assert inp.sr_job_seconds == {job.id: SR_START_SECONDS + (9 + SR_OVERHEAD_TILES) * 7.0 for job in planned.jobs}
    assert classic.sr_job_ids == [] and classic.sr_job_seconds == {}
