"""Both storage backends behind one fixture: every contract test runs on local files and on the S3 server."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.base import Storage
from storage.local import LocalStorage
from storage.s3 import S3Location, S3Storage
from tests.s3_server import S3Server


def s3_storage(server: S3Server, bucket: str, prefix: str = "") -> S3Storage:
    where = S3Location(bucket, prefix, endpoint_url=server.endpoint_url, public_endpoint_url=None, region=None)
    return S3Storage(where)


@pytest.fixture(scope="session")
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket()


@pytest.fixture(params=["local", "s3"])
def any_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "storage")
    else:
        server = request.getfixturevalue("s3_server")
        # A prefix of its own per test: objects of other tests in the bucket are invisible to it.
        yield s3_storage(server, request.getfixturevalue("s3_bucket"), f"t/{uuid.uuid4().hex}")
