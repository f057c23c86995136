"""The storage contract, on local files and on a real S3-compatible server over HTTP."""

import io
import os
from pathlib import Path

import httpx
import pytest

from core.errors import StartupRefused
from storage.base import CHUNK_SIZE, ObjectNotFound, Storage, enhanced_key, original_key
from storage.factory import storage_from
from storage.local import LocalStorage
from storage.s3 import S3Storage
from tests.conftest import make_settings
from tests.s3_server import S3Server
from tests.storage.conftest import s3_storage

KEY = original_key("album1", "image1", "JPEG")


def test_put_get_exists_delete(any_storage: Storage) -> None:
    assert not any_storage.exists(KEY)
    with pytest.raises(ObjectNotFound):
        any_storage.get(KEY)
    any_storage.put(KEY, b"first")
    any_storage.put(KEY, b"second")  # replaces
    assert any_storage.exists(KEY) and any_storage.get(KEY) == b"second"
    any_storage.delete(KEY)
    any_storage.delete(KEY)  # deleting twice is fine
    assert not any_storage.exists(KEY)


def test_put_file_and_open_stream_in_chunks(any_storage: Storage) -> None:
    """A file larger than a chunk (and than the S3 multipart threshold) goes through whole and comes back whole."""
    data = os.urandom(9 * 1024 * 1024 + 123)
    source = io.BytesIO(b"skipped" + data)
    source.seek(len(b"skipped"))  # stored from the current position, as a rewound upload is
    any_storage.put_file(KEY, source)
    stored = any_storage.open(KEY)
    chunks = list(stored.chunks)
    assert stored.size == len(data) and b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= CHUNK_SIZE and len(chunks) > 1


def test_list_objects_by_prefix_with_their_times(any_storage: Storage) -> None:
    keys = [original_key("a1", "i1", "JPEG"), original_key("a2", "i2", "PNG"), enhanced_key("j1")]
    for key in keys:
        any_storage.put(key, b"x")
    listed = list(any_storage.list_objects("originals/"))
    assert sorted(item.key for item in listed) == sorted(keys[:2])
    assert all(item.modified.tzinfo is not None for item in listed)
    assert [item.key for item in any_storage.list_objects("enhanced/")] == [keys[2]]
    assert list(any_storage.list_objects("thumbnails/")) == []


def test_open_of_a_missing_object_is_not_found(any_storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        any_storage.open(enhanced_key("nope"))


@pytest.mark.parametrize("key", ["../escape.jpg", "originals/../../x", "/etc/passwd", "originals", "a/b\x00c"])
def test_unsafe_keys_are_refused(any_storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="unsafe storage key"):
        any_storage.put(key, b"x")


def test_local_storage_has_no_presigned_urls(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path).presigned_url(KEY, 60, "image/jpeg") is None


def test_a_presigned_url_reads_the_object_without_credentials(s3_server: S3Server, s3_bucket: str) -> None:
    storage = s3_storage(s3_server, s3_bucket, "presign")
    storage.put(KEY, b"jpeg bytes")
    url = storage.presigned_url(KEY, 60, "image/jpeg")
    assert url is not None and "X-Amz-Signature" in url and "presign/originals/" in url
    response = httpx.get(url)  # a plain client: no AWS credentials involved
    assert response.status_code == 200 and response.content == b"jpeg bytes"
    assert response.headers["content-type"] == "image/jpeg"


def test_a_public_endpoint_signs_urls_for_the_host_clients_reach(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Inside a cluster the store is e.g. http://minio:9000; browsers reach it under another name."""
    settings = make_settings(
        "sqlite://",
        LocalStorage(tmp_path),
        storage_url=f"s3://{s3_bucket}/p",
        storage_endpoint_url=s3_server.endpoint_url,
        storage_public_endpoint_url="https://photos.example.com",
    )
    storage = storage_from(settings)
    url = storage.presigned_url(KEY, 60, "image/jpeg")
    assert url is not None and url.startswith(f"https://photos.example.com/{s3_bucket}/p/originals/")


def test_prefixes_keep_deployments_apart(s3_server: S3Server, s3_bucket: str) -> None:
    one, two = s3_storage(s3_server, s3_bucket, "one"), s3_storage(s3_server, s3_bucket, "two")
    one.put(KEY, b"1")
    assert one.exists(KEY) and not two.exists(KEY)


def test_storage_from_settings(tmp_path: Path) -> None:
    local = storage_from(make_settings("sqlite://", LocalStorage(tmp_path / "dir")))
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "dir"
    by_url = storage_from(make_settings("sqlite://", LocalStorage(tmp_path), storage_url=f"file://{tmp_path}/u"))
    assert isinstance(by_url, LocalStorage) and by_url.root == tmp_path / "u"
    s3 = storage_from(make_settings("sqlite://", LocalStorage(tmp_path), storage_url="s3://photos/prod/eu/"))
    assert isinstance(s3, S3Storage) and (s3.where.bucket, s3.where.prefix) == ("photos", "prod/eu")
    assert s3.location == "s3://photos/prod/eu"
    for bad in ("http://photos/x", "s3:///prefix", "photos"):
        with pytest.raises(StartupRefused, match="STORAGE_URL must be"):
            storage_from(make_settings("sqlite://", LocalStorage(tmp_path), storage_url=bad))
