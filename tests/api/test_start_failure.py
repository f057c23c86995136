"""When Temporal cannot be reached after the charge, everything is refunded and the answer is the contract's 500."""

from pathlib import Path

from db.models import BatchStatus, JobStatus
from storage.local import LocalStorage
from tests.conftest import LiveServer, engine_for, make_settings
from tests.db_helpers import assert_balance_matches_ledger, balance, ledger_entries
from tests.factories import make_album, make_images, make_user


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
