"""Strict, bounded request bodies over real HTTP: size limits, nesting, unknown fields, malformed JSON."""

from collections.abc import Iterator

import pytest

from db.models import LedgerType
from tests.conftest import Harness
from tests.db_helpers import balance, ledger_entries
from tests.factories import FIXTURES, make_album, make_album_with_images, make_user

NESTED = b"[" * 1000 + b"]" * 1000  # 2 KB, deeper than the JSON parser's recursion allows
JSON = {"Content-Type": "application/json"}


def enhance_raw(h: Harness, album: str, headers: dict[str, str], content: bytes | Iterator[bytes]):
    return h.http.post(f"/api/albums/{album}/enhance", headers={**headers, **JSON}, content=content)


def assert_nothing_charged(h: Harness, user_id: str, tokens: int = 100) -> None:
    assert balance(h.engine, user_id) == tokens
    assert ledger_entries(h.engine, user_id, LedgerType.CONSUME) == []


@pytest.mark.parametrize("body", [NESTED, b'{"tier": ' + NESTED + b"}", b'{"tier": "TIER_1K", "x": ' + NESTED + b"}"])
def test_deeply_nested_json_to_enhance_is_400(direct_harness: Harness, body: bytes) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 1)
    response = enhance_raw(h, album, user.headers, body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)
    assert_nothing_charged(h, user.id)


def test_deeply_nested_json_to_create_album_is_400(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    response = direct_harness.http.post("/api/albums", headers={**user.headers, **JSON}, content=NESTED)
    assert response.status_code == 400
    assert "error" in response.json()


def test_json_body_over_the_limit_is_413_before_anything_is_charged(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 1)
    padding = "x" * h.settings.max_json_bytes
    response = h.http.post(
        f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K", "note": padding}
    )
    assert response.status_code == 413
    assert response.json() == {"error": f"Request body too large (limit {h.settings.max_json_bytes} bytes)"}
    assert_nothing_charged(h, user.id)


def test_streamed_json_body_without_length_is_cut_off_at_the_limit(direct_harness: Harness) -> None:
    """Chunked transfer declares no Content-Length: the limit applies to what arrives."""
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 1)

    def chunks() -> Iterator[bytes]:
        yield b'{"tier": "TIER_1K", "note": "'
        for _ in range(50 * 1024 * 1024 // 65536):  # 50 MB if the server kept reading
            yield b"x" * 65536
        yield b'"}'

    response = enhance_raw(h, album, user.headers, chunks())
    assert response.status_code == 413
    assert_nothing_charged(h, user.id)


def test_json_limit_leaves_multipart_uploads_their_own_limit(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    photo = (FIXTURES / "chelsea.png").read_bytes()
    assert len(photo) > h.settings.max_json_bytes
    response = h.http.post(f"/api/albums/{album}/images", headers=user.headers, files={"files": ("c.png", photo)})
    assert response.status_code == 201


def test_unknown_fields_on_enhance_are_400_and_named(direct_harness: Harness) -> None:
    """A misspelt skipAlreadyEnhanced must not silently re-enhance (and charge for) everything."""
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 1)
    response = h.http.post(
        f"/api/albums/{album}/enhance",
        headers=user.headers,
        json={"tier": "TIER_1K", "skipAlreadyEnhaced": False},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "Unknown field(s) in request body: skipAlreadyEnhaced. "
        "Allowed: tier, skipAlreadyEnhanced, imageIds, outputFormat, keepLocation, callbackUrl"
    }
    assert_nothing_charged(h, user.id)


def test_many_long_unknown_fields_give_a_bounded_message(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 1)
    body = {"tier": "TIER_1K", **{f"{i:03d}" + "k" * 1000: i for i in range(40)}}
    response = h.http.post(f"/api/albums/{album}/enhance", headers=user.headers, json=body)
    assert response.status_code == 400
    assert len(response.json()["error"]) < 400
    assert response.json()["error"].endswith(
        ", …. Allowed: tier, skipAlreadyEnhanced, imageIds, outputFormat, keepLocation, callbackUrl"
    )


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"null", b"[]", b'"TIER_1K"', b"\xff\xfe{}", b'{"tier": "TIER_1K",}', b"NaN", b'{"tier": 1e999}'],
)
def test_every_malformed_enhance_body_is_400_with_the_error_shape(direct_harness: Harness, body: bytes) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 1)
    response = enhance_raw(h, album, user.headers, body)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert_nothing_charged(h, user.id)


def test_a_multipart_body_elsewhere_than_the_upload_route_gets_the_json_limit(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    photo = (FIXTURES / "chelsea.png").read_bytes()
    response = h.http.post("/api/albums", headers=user.headers, files={"files": ("c.png", photo)})
    assert response.status_code == 413
