"""The results zip streams as it reads, survives results deleted or missing, and is capped per user."""

import io
import socket
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine

from db.models import Batch, BatchStatus, EnhancementJob, Tier
from db.session import session_scope
from storage.base import Storage
from storage.local import LocalStorage
from tests.conftest import LiveServer, engine_for, make_settings
from tests.factories import UserWithKey, jpeg_bytes, make_album_with_images, make_completed_job
from tests.storage_faults import OpenGatedStorage


def album_with_results(engine: Engine, storage: Storage, count: int) -> tuple[UserWithKey, str, list[str], list[str]]:
    """An album whose images each have a completed 1K result in storage: (user, album, image ids, result keys)."""
    user, album, images = make_album_with_images(engine, storage, count)
    keys = []
    for index, image in enumerate(images):
        job = make_completed_job(engine, user, album, image, Tier.TIER_1K)
        key = f"enhanced/{job}.jpg"
        storage.put(key, jpeg_bytes(64 + index, 48))
        with session_scope(engine) as session:
            row = session.get_one(EnhancementJob, job)
            row.enhanced_key = key
            session.get_one(Batch, row.batch_id).status = BatchStatus.COMPLETED
        keys.append(key)
    return user, album, images, keys


def entries(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_missing_result_is_a_note_in_a_valid_archive(sqlite_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    engine = engine_for(sqlite_url)
    user, album, images, keys = album_with_results(engine, storage, 3)
    storage.delete(keys[1])  # lost, as a crash or an operator could lose it
    with LiveServer(make_settings(sqlite_url, storage)) as api:
        for _ in range(2):  # and not only once
            response = api.http.get(f"/api/albums/{album}/results.zip", headers=user.headers)
            assert response.status_code == 200
            files = entries(response.content)
            assert set(files) == {"MISSING.txt", f"{images[0][:8]}-1K.jpg", f"{images[2][:8]}-1K.jpg"}
            assert files[f"{images[0][:8]}-1K.jpg"] == storage.get(keys[0])
            assert f"{images[1][:8]}-1K.jpg" in files["MISSING.txt"].decode()


def test_a_zip_streams_while_an_image_is_deleted_and_stays_valid(db_url: str, tmp_path: Path) -> None:
    storage = OpenGatedStorage(tmp_path / "storage")
    engine = engine_for(db_url)
    user, album, images, keys = album_with_results(engine, storage, 2)
    storage.held_key = keys[1]
    url = f"/api/albums/{album}/results.zip"
    with (
        LiveServer(make_settings(db_url, storage), storage=storage) as api,
        ThreadPoolExecutor(1) as pool,
        api.http.stream("GET", url, headers=user.headers) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()
        first = next(chunks)  # sent before the second result is even opened
        assert first.startswith(b"PK\x03\x04")
        assert storage.waiting.wait(30)
        deleted = pool.submit(api.http.delete, f"/api/images/{images[1]}", headers=user.headers)
        assert deleted.result(30).status_code == 204
        storage.release.set()
        content = first + b"".join(chunks)
    files = entries(content)
    assert set(files) == {"MISSING.txt", f"{images[0][:8]}-1K.jpg"}
    assert files[f"{images[0][:8]}-1K.jpg"] == storage.get(keys[0])


def test_one_zip_per_user_at_a_time(sqlite_url: str, tmp_path: Path) -> None:
    storage = OpenGatedStorage(tmp_path / "storage")
    engine = engine_for(sqlite_url)
    user, album, _, keys = album_with_results(engine, storage, 2)
    storage.held_key = keys[1]
    with LiveServer(make_settings(sqlite_url, storage), storage=storage) as api:
        with api.http.stream("GET", f"/api/albums/{album}/results.zip", headers=user.headers) as first:
            assert first.status_code == 200
            assert storage.waiting.wait(30)
            second = api.http.get(f"/api/albums/{album}/results.zip", headers=user.headers)
            assert second.status_code == 429
            assert second.json() == {"error": "Too many open zip downloads (at most 1); close one first"}
            storage.release.set()
            first.read()
        # Given back before its last bytes leave: the next zip right after is not refused.
        assert api.http.get(f"/api/albums/{album}/results.zip", headers=user.headers).status_code == 200


def test_a_big_album_zip_starts_before_it_is_read_whole(sqlite_url: str, tmp_path: Path) -> None:
    """Bytes arrive while the last result is still held: nothing builds the archive first."""
    storage = OpenGatedStorage(tmp_path / "storage")
    engine = engine_for(sqlite_url)
    user, album, _, keys = album_with_results(engine, storage, 4)
    storage.held_key = keys[-1]
    with LiveServer(make_settings(sqlite_url, storage), storage=storage) as api:
        host, port = api.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                f"GET /api/albums/{album}/results.zip HTTP/1.1\r\nHost: t\r\n"
                f"Authorization: Bearer {user.api_key}\r\n\r\n".encode()
            )
            data = b""
            while data.count(b"PK\x03\x04") < 3:
                data += sock.recv(65536)
            assert storage.waiting.is_set() or storage.waiting.wait(30)
            storage.release.set()
