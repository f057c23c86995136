"""Deletes racing uploads and thumbnails leave no stored object without its row (each race made exact by holding
the other request's write), and the sweep finds and removes what a crash would leave."""

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cli import sweep_storage
from db.models import EnhancementJob, Tier
from db.session import session_scope
from services.storage_sweep import find_orphans
from services.thumbnails import thumbnail_key
from storage.local import LocalStorage
from tests.conftest import LiveServer, engine_for, make_settings
from tests.factories import jpeg_bytes, make_album, make_album_with_images, make_completed_job, make_user
from tests.storage_faults import WriteGatedStorage


def stored_keys(storage: LocalStorage) -> list[str]:
    """Every object in the storage but the deployment marker."""
    return sorted(
        path.relative_to(storage.root).as_posix()
        for path in storage.root.rglob("*")
        if path.is_file() and not path.relative_to(storage.root).as_posix().startswith("deployment/")
    )


def test_an_upload_racing_the_delete_of_its_album_is_404_and_leaves_no_file(db_url: str, tmp_path: Path) -> None:
    storage = WriteGatedStorage(tmp_path / "storage", "originals/")
    settings = make_settings(db_url, storage)
    engine = engine_for(db_url)
    user = make_user(engine)
    album = make_album(engine, user)
    with LiveServer(settings, storage=storage) as api, ThreadPoolExecutor(1) as pool:
        files = [("files", ("a.jpg", io.BytesIO(jpeg_bytes()), "image/jpeg"))]
        upload = pool.submit(api.http.post, f"/api/albums/{album}/images", headers=user.headers, files=files)
        assert storage.waiting.wait(30)  # the upload is checked and about to write its original
        assert api.http.delete(f"/api/albums/{album}", headers=user.headers).status_code == 204
        storage.release.set()
        answer = upload.result(30)
    assert (answer.status_code, answer.json()) == (404, {"error": "Album not found"})
    assert stored_keys(storage) == []


def test_a_thumbnail_racing_the_delete_of_its_image_is_404_and_leaves_no_file(db_url: str, tmp_path: Path) -> None:
    storage = WriteGatedStorage(tmp_path / "storage", "thumbnails/")
    settings = make_settings(db_url, storage)
    engine = engine_for(db_url)
    user, album, [image, kept] = make_album_with_images(engine, storage, 2)
    with LiveServer(settings, storage=storage) as api, ThreadPoolExecutor(1) as pool:
        thumb = pool.submit(api.http.get, f"/api/images/{image}/thumbnail", headers=user.headers)
        assert storage.waiting.wait(30)  # the thumbnail is made and about to be stored
        assert api.http.delete(f"/api/images/{image}", headers=user.headers).status_code == 204
        storage.release.set()
        answer = thumb.result(30)
    assert (answer.status_code, answer.json()) == (404, {"error": "Image not found"})
    assert [key for key in stored_keys(storage) if image in key] == []
    assert [key for key in stored_keys(storage) if kept in key] == [f"originals/{album}/{kept}.jpeg"]


def age(storage: LocalStorage, key: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(storage.path_for(key), (then, then))


def test_the_sweep_removes_old_orphans_only(sqlite_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(sqlite_url, storage)
    engine = engine_for(sqlite_url)
    user, album, [image] = make_album_with_images(engine, storage, 1)
    job = make_completed_job(engine, user, album, image, Tier.TIER_1K)
    with session_scope(engine) as session:
        session.get_one(EnhancementJob, job).enhanced_key = f"enhanced/{job}.jpg"
    storage.put(f"enhanced/{job}.jpg", b"result")
    storage.put(thumbnail_key(image, 320), b"thumb")
    orphans = [f"originals/{album}/gone.jpeg", "enhanced/gone.jpg", "thumbnails/gone-320-v2.jpg"]
    for key in orphans:
        storage.put(key, b"orphan")
    storage.put("enhanced/young.jpg", b"an attempt still writing")
    for key in stored_keys(storage):
        if key != "enhanced/young.jpg":
            age(storage, key, 7200)
    assert find_orphans(engine, storage, 3600).orphans == sorted(orphans)
    listed = sweep_storage(settings, 3600, dry_run=True)
    assert listed.splitlines() == [*sorted(orphans), "7 objects examined; would remove 3 that no row refers to"]
    assert all(storage.exists(key) for key in orphans)
    assert sweep_storage(settings, 3600, dry_run=False).splitlines()[-1] == (
        "7 objects examined; removed 3 that no row refers to"
    )
    assert not any(storage.exists(key) for key in orphans)
    assert storage.exists("enhanced/young.jpg") and storage.exists(f"enhanced/{job}.jpg")
    assert storage.exists(thumbnail_key(image, 320))
    # A young object is swept once it is older than the grace period.
    assert find_orphans(engine, storage, 0).orphans == ["enhanced/young.jpg"]
