"""The quote (`POST /api/albums/{id}/enhance/quote`) is what the enhance then does: for every tier, skip flag,
subset of images and balance, over real HTTP on both databases, the quote's counts, cost and refusal equal the
enhance's answer sent right after it."""

import itertools
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.vocabulary import Tier
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings, wait_until
from tests.db_helpers import assert_balance_matches_ledger, balance, batch_row, ledger_entries
from tests.factories import (
    UserWithKey,
    make_album,
    make_completed_job,
    make_failed_job,
    make_images,
    make_pending_job,
    make_user,
)

SUBSETS: dict[str, list[int] | None] = {"all": None, "first": [0], "last two": [1, 2], "each": [0, 1, 2]}
BALANCES = (0, 5, 10, 30)
# The enhance's 200 fields the quote answers by the same names.
SAME_FIELDS = ("totalImages", "skipped", "queued", "totalCost", "newBalance")


@pytest.fixture
def small_batches(db_url: str, storage: LocalStorage) -> Iterator[Harness]:
    """Direct mode with batches of at most two images, so three images can be too many."""
    settings = make_settings(db_url, storage, max_batch_size=2)
    with LiveServer(settings) as api:
        yield Harness(settings, engine_for(db_url), storage, api)


def album_with_history(h: Harness, tokens: int) -> tuple[UserWithKey, str, list[str]]:
    """Three images: the first enhanced at 1K, the second in flight at 2K, the third failed (refunded) at 4K."""
    user = make_user(h.engine, tokens=tokens)
    album = make_album(h.engine, user)
    images = make_images(h.engine, h.storage, album, 3)
    make_completed_job(h.engine, user, album, images[0], Tier.TIER_1K)
    make_pending_job(h.engine, user, album, images[1], Tier.TIER_2K)
    make_failed_job(h.engine, user, album, images[2], Tier.TIER_4K)
    return user, album, images


def post(h: Harness, path: str, user: UserWithKey, body: dict[str, Any]) -> httpx.Response:
    return h.http.post(path, headers=user.headers, json=body)


def agrees(quote: dict[str, Any], answer: httpx.Response) -> str:
    """Assert that the enhance answered what the quote said; returns what that was."""
    if quote["refusal"] is None:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert {name: body[name] for name in SAME_FIELDS} == {name: quote[name] for name in SAME_FIELDS}
        assert [job["imageId"] for job in body["jobs"]] == quote["imageIds"]
        return "queued" if body["queued"] else "nothing to enhance"
    refusal = dict(quote["refusal"])
    status = refusal.pop("status")
    assert (answer.status_code, answer.json()) == (status, refusal)
    return f"{status} {refusal['error'].split(':')[0]}"


def test_the_quote_is_what_the_enhance_then_does(small_batches: Harness) -> None:
    h = small_batches
    seen: Counter[str] = Counter()
    batches = []
    for tier, skip, subset, tokens in itertools.product(Tier, (True, False), SUBSETS.values(), BALANCES):
        user, album, images = album_with_history(h, tokens)
        body: dict[str, Any] = {"tier": tier, "skipAlreadyEnhanced": skip}
        if subset is not None:
            body["imageIds"] = [images[i] for i in subset]
        quoted = post(h, f"/api/albums/{album}/enhance/quote", user, body)
        assert quoted.status_code == 200, quoted.text
        quote = quoted.json()
        assert quote["balance"] == tokens and balance(h.engine, user.id) == tokens  # a quote charges nothing
        answer = post(h, f"/api/albums/{album}/enhance", user, body)
        seen[agrees(quote, answer)] += 1
        assert balance(h.engine, user.id) == quote["newBalance"]
        if answer.status_code == 200 and answer.json()["batchId"]:
            batches.append(answer.json()["batchId"])
    assert set(seen) == {
        "queued",
        "nothing to enhance",
        "400 Too many images to enhance",
        "402 Insufficient tokens",
    }, seen
    wait_until(lambda: all(batch_row(h.engine, b).status == "COMPLETED" for b in batches))


def test_what_allows_no_plan_is_quoted_as_the_enhance_refuses_it(small_batches: Harness) -> None:
    h = small_batches
    user, album, images = album_with_history(h, 30)
    empty = make_album(h.engine, user, name="Empty")
    cases: list[tuple[str, dict[str, Any]]] = [
        (empty, {"tier": "TIER_1K"}),
        (album, {"tier": "TIER_2K", "imageIds": [images[0], "not-in-this-album"]}),
    ]
    for album_id, body in cases:
        quote = post(h, f"/api/albums/{album_id}/enhance/quote", user, body).json()
        assert quote["refusal"] is not None and quote["queued"] == quote["totalCost"] == 0
        assert agrees(quote, post(h, f"/api/albums/{album_id}/enhance", user, body)) in (
            "404 No images found in album",
            "400 Some imageIds are not images of this album",
        )
    assert balance(h.engine, user.id) == 30


def test_a_quote_is_not_counted_as_an_enhance_request(db_url: str, storage: LocalStorage) -> None:
    settings = make_settings(db_url, storage, rate_limit_enabled=True, rate_limit_requests=1)
    engine = engine_for(db_url)
    user = make_user(engine, tokens=10)
    album = make_album(engine, user)
    make_images(engine, storage, album, 1)
    with LiveServer(settings) as api:
        quotes = [api.http.post(f"/api/albums/{album}/enhance/quote", headers=user.headers, json={"tier": "TIER_1K"})]
        quotes += [api.http.post(f"/api/albums/{album}/enhance/quote", headers=user.headers, json={"tier": "TIER_1K"})]
        assert [q.status_code for q in quotes] == [200, 200]
        assert all("X-RateLimit-Remaining" not in q.headers for q in quotes)
        enhanced = api.http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"})
        assert enhanced.status_code == 200 and enhanced.headers["X-RateLimit-Remaining"] == "0"
        assert enhanced.json()["totalCost"] == quotes[0].json()["totalCost"] == 2
        wait_until(lambda: batch_row(engine, enhanced.json()["batchId"]).status == "COMPLETED")
    assert [entry.amount for entry in ledger_entries(engine, user.id)] == [10, -2]
    assert_balance_matches_ledger(engine, user.id)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"tier": "TIER_8K"}, "Invalid tier"),
        ({"tier": "TIER_1K", "skipAlreadyEnhanced": "yes"}, "skipAlreadyEnhanced must be a boolean"),
        ({"tier": "TIER_1K", "skipAlredyEnhanced": False}, "Unknown field(s) in request body"),
        ({"tier": "TIER_1K", "imageIds": []}, "imageIds must be a non-empty list"),
    ],
)
def test_a_body_the_enhance_would_not_read_is_refused_alike(
    direct_harness: Harness, body: dict[str, Any], error: str
) -> None:
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    quoted = post(h, f"/api/albums/{album}/enhance/quote", user, body)
    enhanced = post(h, f"/api/albums/{album}/enhance", user, body)
    assert quoted.status_code == enhanced.status_code == 400
    assert quoted.json() == enhanced.json() and quoted.json()["error"].startswith(error)
