"""POST /api/albums/{id}/enhance against the contract, over real HTTP, on SQLite and PostgreSQL (direct mode)."""

import re

import httpx
import pytest

from db.models import JobStatus, LedgerType, Tier
from tests.conftest import Harness, wait_until
from tests.db_helpers import assert_balance_matches_ledger, balance, batch_row, jobs_of_batch, ledger_entries
from tests.factories import (
    make_album,
    make_album_with_images,
    make_completed_job,
    make_images,
    make_pending_job,
    make_user,
)


def enhance(h: Harness, album_id: str, headers: dict[str, str], body: object = None) -> httpx.Response:
    return h.http.post(f"/api/albums/{album_id}/enhance", headers=headers, json=body)


def wait_for_batch_end(h: Harness, batch_id: str) -> None:
    wait_until(lambda: batch_row(h.engine, batch_id).status in ("COMPLETED", "CANCELLED", "FAILED"))


# --- authentication and validation order -------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}])
def test_no_or_wrong_key_is_401(direct_harness: Harness, headers: dict[str, str]) -> None:
    owner = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, owner)
    response = enhance(direct_harness, album, headers, {"tier": "TIER_1K"})
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    assert "Authorization: Bearer" in response.json()["hint"]


def test_auth_comes_before_tier_validation(direct_harness: Harness) -> None:
    owner = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, owner)
    response = enhance(direct_harness, album, {}, {"tier": "TIER_8K"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [{"tier": "TIER_8K"}, {}, {"tier": None}, {"tier": 1024}, {"tier": "tier_1k"}, {"skipAlreadyEnhanced": False}],
)
def test_invalid_tier_is_400(direct_harness: Harness, body: dict[str, object]) -> None:
    user = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, user)
    make_images(direct_harness.engine, direct_harness.storage, album, 1)
    response = enhance(direct_harness, album, user.headers, body)
    assert response.status_code == 400
    assert "Invalid tier" in response.json()["error"]
    assert balance(direct_harness.engine, user.id) == 100


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"TIER_1K"', b""])
def test_malformed_body_is_400_not_500(direct_harness: Harness, content: bytes) -> None:
    user = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, user)
    response = direct_harness.http.post(
        f"/api/albums/{album}/enhance", content=content, headers={**user.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


def test_skip_flag_of_wrong_type_is_400(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, user)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_1K", "skipAlreadyEnhanced": "yes"})
    assert response.status_code == 400
    assert "skipAlreadyEnhanced" in response.json()["error"]


def test_tier_is_checked_before_the_album(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    response = enhance(direct_harness, "does-not-exist", user.headers, {"tier": "bad"})
    assert response.status_code == 400


def test_unknown_album_is_404(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    response = enhance(direct_harness, "does-not-exist", user.headers, {"tier": "TIER_1K"})
    assert response.status_code == 404
    assert response.json() == {"error": "Album not found"}


def test_album_of_another_user_is_403_and_charges_nothing(direct_harness: Harness) -> None:
    owner, intruder = make_user(direct_harness.engine), make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, owner)
    make_images(direct_harness.engine, direct_harness.storage, album, 2)
    response = enhance(direct_harness, album, intruder.headers, {"tier": "TIER_1K"})
    assert response.status_code == 403
    assert "error" in response.json()
    assert balance(direct_harness.engine, intruder.id) == balance(direct_harness.engine, owner.id) == 100


def test_empty_album_is_404(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    album = make_album(direct_harness.engine, user)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_1K"})
    assert response.status_code == 404
    assert response.json() == {"error": "No images found in album"}


# --- batch size, cost and balance ------------------------------------------------------------------


def test_more_than_twenty_images_is_400_with_counts(direct_harness: Harness) -> None:
    user, album, _ = make_album_with_images(direct_harness.engine, direct_harness.storage, 21, tokens=1000)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_1K"})
    assert response.status_code == 400
    body = response.json()
    assert body["totalImages"] == 21 and body["toEnhance"] == 21 and body["maxBatchSize"] == 20
    assert "error" in body
    assert balance(direct_harness.engine, user.id) == 1000


def test_twenty_images_after_skipping_is_allowed(direct_harness: Harness) -> None:
    user, album, images = make_album_with_images(direct_harness.engine, direct_harness.storage, 21, tokens=1000)
    make_completed_job(direct_harness.engine, user, album, images[0], Tier.TIER_1K)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_1K"})
    assert response.status_code == 200
    assert response.json()["queued"] == 20 and response.json()["skipped"] == 1
    wait_for_batch_end(direct_harness, response.json()["batchId"])


@pytest.mark.parametrize(("tier", "cost"), [("TIER_1K", 2), ("TIER_2K", 5), ("TIER_4K", 10)])
def test_cost_for_each_tier(direct_harness: Harness, tier: str, cost: int) -> None:
    user, album, _ = make_album_with_images(direct_harness.engine, direct_harness.storage, 3, tokens=100)
    response = enhance(direct_harness, album, user.headers, {"tier": tier})
    assert response.status_code == 200
    body = response.json()
    assert body["totalCost"] == 3 * cost
    assert body["newBalance"] == 100 - 3 * cost
    consumed = ledger_entries(direct_harness.engine, user.id, LedgerType.CONSUME)
    assert [entry.amount for entry in consumed] == [-3 * cost]
    assert consumed[0].reference == body["batchId"]
    wait_for_batch_end(direct_harness, body["batchId"])
    assert_balance_matches_ledger(direct_harness.engine, user.id)


def test_insufficient_tokens_is_402_and_charges_nothing(direct_harness: Harness) -> None:
    user, album, _ = make_album_with_images(direct_harness.engine, direct_harness.storage, 2, tokens=9)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_2K"})
    assert response.status_code == 402
    assert response.json() == {"error": "Insufficient tokens", "required": 10, "toEnhance": 2, "balance": 9}
    assert balance(direct_harness.engine, user.id) == 9
    assert ledger_entries(direct_harness.engine, user.id, LedgerType.CONSUME) == []


def test_exact_balance_is_enough(direct_harness: Harness) -> None:
    user, album, _ = make_album_with_images(direct_harness.engine, direct_harness.storage, 2, tokens=10)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_2K"})
    assert response.status_code == 200
    assert response.json()["newBalance"] == 0
    wait_for_batch_end(direct_harness, response.json()["batchId"])


# --- response shape, skip filter ---------------------------------------------------------------------


def test_success_response_matches_the_contract(direct_harness: Harness) -> None:
    user, album, images = make_album_with_images(direct_harness.engine, direct_harness.storage, 10, tokens=100)
    for image in images[:3]:
        make_completed_job(direct_harness.engine, user, album, image, Tier.TIER_2K)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_2K"})
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("success", "totalImages", "skipped", "queued", "totalCost", "newBalance")} == {
        "success": True,
        "totalImages": 10,
        "skipped": 3,
        "queued": 7,
        "totalCost": 35,
        "newBalance": 65,
    }
    batch_id = body["batchId"]
    assert re.fullmatch(rf"album-{album}-\d{{13}}", batch_id)
    assert [job["imageId"] for job in body["jobs"]] == images[3:]
    assert all(job["jobId"] == batch_id for job in body["jobs"])
    job_rows = jobs_of_batch(direct_harness.engine, batch_id)
    assert [job["enhancementJobId"] for job in body["jobs"]] == [row.id for row in job_rows]
    wait_for_batch_end(direct_harness, batch_id)


def test_skip_false_reenhances_everything(direct_harness: Harness) -> None:
    user, album, images = make_album_with_images(direct_harness.engine, direct_harness.storage, 10, tokens=150)
    for image in images:
        make_completed_job(direct_harness.engine, user, album, image, Tier.TIER_4K)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_4K", "skipAlreadyEnhanced": False})
    body = response.json()
    assert (body["skipped"], body["queued"], body["totalCost"], body["newBalance"]) == (0, 10, 100, 50)
    direct_harness.http.post(f"/api/batches/{body['batchId']}/cancel", headers=user.headers)
    wait_for_batch_end(direct_harness, body["batchId"])


def test_all_already_enhanced_is_200_with_no_charge(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine, tokens=100)
    album = make_album(direct_harness.engine, user)
    for image in make_images(direct_harness.engine, direct_harness.storage, album, 10):
        make_completed_job(direct_harness.engine, user, album, image, Tier.TIER_1K)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_1K"})
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("success", "totalImages", "skipped", "queued", "totalCost", "newBalance", "jobs")} == {
        "success": True,
        "totalImages": 10,
        "skipped": 10,
        "queued": 0,
        "totalCost": 0,
        "newBalance": 100,
        "jobs": [],
    }
    assert ledger_entries(direct_harness.engine, user.id, LedgerType.CONSUME) == []


def test_other_tier_is_not_skipped(direct_harness: Harness) -> None:
    user, album, images = make_album_with_images(direct_harness.engine, direct_harness.storage, 1, tokens=100)
    [image] = images
    make_completed_job(direct_harness.engine, user, album, image, Tier.TIER_1K)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_2K"})
    assert (response.json()["skipped"], response.json()["queued"]) == (0, 1)
    wait_for_batch_end(direct_harness, response.json()["batchId"])


def test_work_in_flight_is_never_charged_twice(direct_harness: Harness) -> None:
    user, album, images = make_album_with_images(direct_harness.engine, direct_harness.storage, 2, tokens=100)
    make_pending_job(direct_harness.engine, user, album, images[0], Tier.TIER_1K)
    response = enhance(direct_harness, album, user.headers, {"tier": "TIER_1K"})
    body = response.json()
    assert (body["skipped"], body["queued"], body["totalCost"]) == (1, 1, 2)
    assert [job["imageId"] for job in body["jobs"]] == [images[1]]
    wait_for_batch_end(direct_harness, body["batchId"])


# --- the batch runs (direct mode) -----------------------------------------------------------------------


def test_direct_mode_runs_the_batch_to_completion(direct_harness: Harness) -> None:
    user, album, _ = make_album_with_images(direct_harness.engine, direct_harness.storage, 2, tokens=100)
    body = enhance(direct_harness, album, user.headers, {"tier": "TIER_1K"}).json()
    wait_for_batch_end(direct_harness, body["batchId"])
    jobs = jobs_of_batch(direct_harness.engine, body["batchId"])
    assert [job.status for job in jobs] == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    assert all(max(job.enhanced_width or 0, job.enhanced_height or 0) == 1024 for job in jobs)
    again = enhance(direct_harness, album, user.headers, {"tier": "TIER_1K"}).json()
    assert (again["queued"], again["skipped"], again["newBalance"]) == (0, 2, 96)
    assert_balance_matches_ledger(direct_harness.engine, user.id)
