"""The API on S3-compatible storage: uploads land in the bucket, downloads redirect to presigned URLs (or stream
when those are off), and ownership is checked before either."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storage.base import Storage
from storage.factory import storage_from
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings
from tests.db_helpers import original_key_of
from tests.factories import jpeg_bytes, make_album, make_user
from tests.s3_server import S3Server


@pytest.fixture(params=[True, False], ids=["presigned", "streamed"])
def s3_harness(
    request: pytest.FixtureRequest, primary_db_url: str, s3_server: S3Server, tmp_path: Path
) -> Iterator[Harness]:
    settings = make_settings(
        primary_db_url,
        LocalStorage(tmp_path / "unused"),
        storage_url=f"s3://{s3_server.create_bucket()}/{uuid.uuid4().hex}",
        storage_endpoint_url=s3_server.endpoint_url,
        storage_presigned_urls=request.param,
    )
    storage: Storage = storage_from(settings)
    with LiveServer(settings) as api:
        yield Harness(settings, engine_for(primary_db_url), storage, api)  # type: ignore[arg-type]


def test_upload_then_download_through_s3(s3_harness: Harness) -> None:
    h = s3_harness
    owner, stranger = make_user(h.engine), make_user(h.engine)
    album = make_album(h.engine, owner)
    photo = jpeg_bytes(120, 80)
    uploaded = h.http.post(
        f"/api/albums/{album}/images", headers=owner.headers, files=[("files", ("a.jpg", photo, "image/jpeg"))]
    )
    assert uploaded.status_code == 201, uploaded.text
    image_id = uploaded.json()["images"][0]["id"]
    assert not (Path(h.settings.storage_dir)).exists()  # nothing went to local disk

    path = f"/api/images/{image_id}/original"
    assert h.http.get(path, headers=stranger.headers).status_code == 404  # no URL handed to a stranger
    response = h.http.get(path, headers=owner.headers)
    if h.settings.storage_presigned_urls:
        assert response.status_code == 307 and response.headers["cache-control"] == "private, no-store"
        location = response.headers["location"]
        assert location.startswith(h.settings.storage_endpoint_url or "") and "X-Amz-Signature" in location
        response = httpx.get(location)  # the client follows without any credentials
    assert response.status_code == 200 and response.content == photo
    assert response.headers["content-type"] == "image/jpeg"

    h.storage.delete(original_key_of(h.engine, image_id))
    missing = h.http.get(path, headers=owner.headers)
    assert missing.status_code == 404 and missing.json() == {"error": "Original image not found in storage"}
