"""Idempotency-Key and the per-user rate limit of the enhance endpoint, over real HTTP, on both databases."""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from db.models import IdempotencyRecord, LedgerType
from db.session import session_scope
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings, wait_until
from tests.db_helpers import assert_balance_matches_ledger, balance, batch_row, ledger_entries
from tests.factories import make_album, make_album_with_images, make_images, make_user


def enhance(http: httpx.Client, album: str, headers: dict[str, str], key: str | None, body: dict[str, object]):
    extra = {"Idempotency-Key": key} if key else {}
    return http.post(f"/api/albums/{album}/enhance", headers={**headers, **extra}, json=body)


def wait_for_batches(h: Harness, batch_ids: set[str]) -> None:
    wait_until(lambda: all(batch_row(h.engine, b).status in ("COMPLETED", "CANCELLED", "FAILED") for b in batch_ids))


def test_same_key_same_body_replays_and_charges_once(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 3, tokens=100)
    first = enhance(h.http, album, user.headers, "key-1", {"tier": "TIER_2K"})
    again = enhance(h.http, album, user.headers, "key-1", {"tier": "TIER_2K", "skipAlreadyEnhanced": True})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert balance(h.engine, user.id) == 85
    assert len(ledger_entries(h.engine, user.id, LedgerType.CONSUME)) == 1
    wait_for_batches(h, {first.json()["batchId"]})
    assert_balance_matches_ledger(h.engine, user.id)


def test_same_key_with_another_body_is_422(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 1, tokens=100)
    first = enhance(h.http, album, user.headers, "key-2", {"tier": "TIER_1K"})
    other = enhance(h.http, album, user.headers, "key-2", {"tier": "TIER_4K"})
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["error"]
    assert balance(h.engine, user.id) == 98
    wait_for_batches(h, {first.json()["batchId"]})


def test_keys_belong_to_their_user(direct_harness: Harness) -> None:
    h = direct_harness
    alice, bob = make_user(h.engine), make_user(h.engine)
    album_a, album_b = make_album(h.engine, alice), make_album(h.engine, bob)
    make_images(h.engine, h.storage, album_a, 1)
    make_images(h.engine, h.storage, album_b, 1)
    a = enhance(h.http, album_a, alice.headers, "shared", {"tier": "TIER_1K"})
    b = enhance(h.http, album_b, bob.headers, "shared", {"tier": "TIER_1K"})
    assert a.status_code == b.status_code == 200 and a.json()["batchId"] != b.json()["batchId"]
    wait_for_batches(h, {a.json()["batchId"], b.json()["batchId"]})


def test_a_failed_request_does_not_burn_the_key(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 1, tokens=1)
    assert enhance(h.http, album, user.headers, "key-3", {"tier": "TIER_1K"}).status_code == 402
    from db import ledger
    from db.session import session_scope

    with session_scope(h.engine) as session:
        ledger.grant(session, user.id, 10, "test:top-up")
    retried = enhance(h.http, album, user.headers, "key-3", {"tier": "TIER_1K"})
    assert retried.status_code == 200 and retried.json()["newBalance"] == 9
    wait_for_batches(h, {retried.json()["batchId"]})


def test_concurrent_requests_with_one_key_charge_once(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 2, tokens=100)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=h.api.base_url, timeout=30) as http:
            return enhance(http, album, user.headers, "key-4", {"tier": "TIER_1K", "skipAlreadyEnhanced": False})

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(send, range(10)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 409}, codes
    batch_ids = {r.json()["batchId"] for r in responses if r.status_code == 200}
    assert len(batch_ids) == 1
    assert len(ledger_entries(h.engine, user.id, LedgerType.CONSUME)) == 1
    assert balance(h.engine, user.id) == 96
    wait_for_batches(h, batch_ids)
    assert_balance_matches_ledger(h.engine, user.id)


def test_rate_limit_answers_429_and_charges_nothing(db_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(
        db_url, storage, rate_limit_enabled=True, rate_limit_requests=3, rate_limit_window_seconds=3600
    )
    engine = engine_for(db_url)
    user, neighbour = make_user(engine, tokens=100), make_user(engine, tokens=100)
    album, other_album = make_album(engine, user), make_album(engine, neighbour)
    make_images(engine, storage, album, 1)
    make_images(engine, storage, other_album, 1)
    with LiveServer(settings) as api:
        answers = [enhance(api.http, album, user.headers, None, {"tier": "TIER_1K"}) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
        limited = answers[-1]
        body = limited.json()
        assert body["error"] and 1 <= body["retryAfter"] <= 3600
        assert limited.headers["Retry-After"] == str(body["retryAfter"])
        assert int(limited.headers["X-RateLimit-Reset"]) > time.time()
        assert enhance(api.http, other_album, neighbour.headers, None, {"tier": "TIER_1K"}).status_code == 200
    # Only the first request had anything to charge; the next two skipped the in-flight image.
    assert [e.amount for e in ledger_entries(engine, user.id, LedgerType.CONSUME)] == [-2]


def test_rate_limit_is_shared_between_replicas(db_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(
        db_url, storage, rate_limit_enabled=True, rate_limit_requests=2, rate_limit_window_seconds=3600
    )
    engine = engine_for(db_url)
    user, album, _ = make_album_with_images(engine, storage, 1, tokens=100)
    with LiveServer(settings) as first, LiveServer(settings) as second:
        codes = [
            enhance(api.http, album, user.headers, None, {"tier": "TIER_1K"}).status_code
            for api in (first, second, first)
        ]
    assert codes == [200, 200, 429]


def test_answers_stored_by_the_previous_version_are_given_again(direct_harness: Harness) -> None:
    """Records written before outcomes were stored hold the HTTP answer: within their day a charge replays
    exactly; a refunded start failure is void and runs again."""
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 2, tokens=100)
    first = enhance(h.http, album, user.headers, "key-old", {"tier": "TIER_1K"})
    failed = enhance(h.http, album, user.headers, "key-old-500", {"tier": "TIER_2K"})
    assert first.status_code == failed.status_code == 200
    start_failed = {"error": "Failed to start enhancement workflow. Tokens have been refunded."}
    with session_scope(h.engine) as session:
        for key, status, body in (("key-old", 200, first.json()), ("key-old-500", 500, start_failed)):
            record = session.get_one(IdempotencyRecord, (user.id, key))
            record.status_code, record.response_body = status, json.dumps(body)
    again = enhance(h.http, album, user.headers, "key-old", {"tier": "TIER_1K"})
    assert (again.status_code, again.json(), again.headers["Idempotent-Replayed"]) == (200, first.json(), "true")
    # A stored "start failed, refunded" is void: the request runs again (here it finds the images enhanced at 2K
    # already, so it charges nothing), and is not a replay.
    again = enhance(h.http, album, user.headers, "key-old-500", {"tier": "TIER_2K"})
    assert again.status_code != 500 and "Idempotent-Replayed" not in again.headers
    assert len(ledger_entries(h.engine, user.id, LedgerType.CONSUME)) == 2
    wait_for_batches(h, {first.json()["batchId"], failed.json()["batchId"]})
