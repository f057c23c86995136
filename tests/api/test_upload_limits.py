"""Uploads are checked from their headers against a per-request pixel budget before anything is decoded, on a
worker thread, so a hostile upload is cheap to refuse and does not hold up other requests."""

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import httpx

from api.state import app_state
from bench.hostile import black_png
from services.deployment import MARKER_KEY
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings
from tests.factories import FIXTURES, make_album, make_user

HUGE = (7745, 7745)  # 59.99 MP: just under the per-image limit


@functools.cache
def huge_png() -> bytes:
    return black_png(*HUGE)  # about 175 KB


def upload(http: httpx.Client, album: str, headers: dict[str, str], files: list[bytes]) -> httpx.Response:
    parts = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)]
    return http.post(f"/api/albums/{album}/images", headers=headers, files=parts)


def stored_files(storage: LocalStorage) -> list[Path]:
    """Every stored object but the deployment's storage marker."""
    files = [p for p in storage.root.rglob("*") if p.is_file()] if storage.root.exists() else []
    return [p for p in files if p != storage.path_for(MARKER_KEY)]


def test_hostile_upload_is_refused_from_the_headers(direct_harness: Harness) -> None:
    """50 small PNGs declaring 59.99 MP each (the 54 s, 446 MB upload of the issue) is refused without decoding."""
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    response = upload(h.http, album, user.headers, [huge_png()] * 50)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Upload too large: its images declare 2999.3 MP in all, at most 200 MP per upload; "
        "send them in several uploads"
    }
    assert stored_files(h.storage) == []


def test_pixel_budget_counts_every_file_of_the_request(primary_db_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    chelsea = (FIXTURES / "chelsea.png").read_bytes()  # 451 × 300
    settings = make_settings(primary_db_url, storage, max_upload_pixels=2 * 451 * 300)
    user = make_user(engine_for(primary_db_url))
    album = make_album(engine_for(primary_db_url), user)
    with LiveServer(settings) as api:
        assert upload(api.http, album, user.headers, [chelsea] * 3).status_code == 400
        assert stored_files(storage) == []
        assert upload(api.http, album, user.headers, [chelsea] * 2).status_code == 201


class HeldStorage(LocalStorage):
    """Holds the first write until released: the upload is then inside its route, past every check."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writing = threading.Event()
        self.release = threading.Event()

    def put_file(self, key: str, source: BinaryIO) -> None:  # how uploads are stored
        self.writing.set()
        self.release.wait(timeout=30)
        super().put_file(key, source)


def test_an_upload_in_progress_does_not_hold_up_other_requests(primary_db_url: str, tmp_path: Path) -> None:
    """The upload route does its blocking work (reading, checking, storing) on a worker thread: while it is held
    there, the event loop still serves other requests. Were it done on the loop, /api/me would time out."""
    engine = engine_for(primary_db_url)
    user = make_user(engine)
    album = make_album(engine, user)
    held = HeldStorage(tmp_path / "storage")
    settings = make_settings(primary_db_url, held)
    with LiveServer(settings, storage=held) as api, ThreadPoolExecutor(max_workers=1) as pool:
        chelsea = (FIXTURES / "chelsea.png").read_bytes()
        pending = pool.submit(upload, api.http, album, user.headers, [chelsea] * 2)
        try:
            assert held.writing.wait(timeout=30)
            with httpx.Client(base_url=api.base_url, timeout=5) as other:
                answers = [other.get("/api/me", headers=user.headers).status_code for _ in range(5)]
        finally:
            held.release.set()
        assert answers == [200] * 5
        assert pending.result().status_code == 201


def test_uploads_wait_for_a_decode_slot_then_get_503(primary_db_url: str, tmp_path: Path) -> None:
    """Decoding memory is bounded per process: with every decode slot taken, an upload is refused cleanly."""
    engine = engine_for(primary_db_url)
    user = make_user(engine)
    album = make_album(engine, user)
    settings = make_settings(
        primary_db_url, LocalStorage(tmp_path / "storage"), upload_decode_slots=1, upload_decode_wait_seconds=0.2
    )
    chelsea = (FIXTURES / "chelsea.png").read_bytes()
    with LiveServer(settings) as api:
        with app_state(api.app).decode_slots:  # another upload is being decoded
            busy = upload(api.http, album, user.headers, [chelsea])
        assert busy.status_code == 503
        assert busy.json() == {"error": "Server busy checking other uploads; retry shortly"}
        assert busy.headers["Retry-After"] == "1"
        assert upload(api.http, album, user.headers, [chelsea]).status_code == 201
