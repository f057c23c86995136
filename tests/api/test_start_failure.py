"""When Temporal cannot be reached after the charge, everything is refunded and the answer is the contract's 500."""

from pathlib import Path

from db.models import BatchStatus, JobStatus
from storage.local import LocalStorage
from tests.conftest import LiveServer, engine_for, make_settings, wait_until
from tests.db_helpers import assert_balance_matches_ledger, balance, batch_row, ledger_entries
from tests.factories import make_album, make_images, make_user
from tests.launchers import FailingFirstStart


def test_unreachable_temporal_refunds_in_full(db_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    # Nothing listens on port 1: the start fails for real.
    settings = make_settings(db_url, storage, execution_mode="temporal", temporal_address="127.0.0.1:1")
    engine = engine_for(db_url)
    user = make_user(engine, tokens=50)
    album = make_album(engine, user)
    make_images(engine, storage, album, 3)
    with LiveServer(settings) as api:
        response = api.http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_2K"})
        assert response.status_code == 500
        assert response.json() == {"error": "Failed to start enhancement workflow. Tokens have been refunded."}
        detail = api.http.get(f"/api/albums/{album}", headers=user.headers).json()
    jobs = [job for image in detail["images"] for job in image["enhancementJobs"]]
    assert len(jobs) == 3 and all(job["status"] == JobStatus.FAILED for job in jobs)
    assert balance(engine, user.id) == 50
    assert sorted(entry.amount for entry in ledger_entries(engine, user.id)) == [-15, 5, 5, 5, 50]
    assert_balance_matches_ledger(engine, user.id)
    with LiveServer(settings) as api:
        batch = api.http.get(f"/api/batches/{jobs[0]['batchId']}", headers=user.headers).json()
    assert batch["status"] == BatchStatus.FAILED and batch["tokensRefunded"] == 15


def test_a_retry_after_a_refunded_start_runs_again_with_the_same_key(db_url: str, tmp_path: Path) -> None:
    """The refund made the first request void: the same Idempotency-Key may run again (and is then replayed)."""
    storage = LocalStorage(tmp_path / "storage")
    engine = engine_for(db_url)
    user = make_user(engine, tokens=50)
    album = make_album(engine, user)
    make_images(engine, storage, album, 2)
    headers = {**user.headers, "Idempotency-Key": "retry-me"}
    with LiveServer(make_settings(db_url, storage), lambda inner: FailingFirstStart(inner, album)) as api:
        url = f"/api/albums/{album}/enhance"
        failed = api.http.post(url, headers=headers, json={"tier": "TIER_1K"})
        assert failed.status_code == 500 and balance(engine, user.id) == 50
        again = api.http.post(url, headers=headers, json={"tier": "TIER_1K"})
        assert again.status_code == 200, again.text
        assert "Idempotent-Replayed" not in again.headers
        assert again.json()["queued"] == 2 and again.json()["newBalance"] == 46
        replayed = api.http.post(url, headers=headers, json={"tier": "TIER_1K"})
        assert (replayed.status_code, replayed.json()) == (200, again.json())
        assert replayed.headers["Idempotent-Replayed"] == "true"
        wait_until(lambda: batch_row(engine, again.json()["batchId"]).status == BatchStatus.COMPLETED)
    assert balance(engine, user.id) == 46
    assert_balance_matches_ledger(engine, user.id)
