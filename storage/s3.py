"""Any S3-compatible object store (AWS S3, MinIO, Cloudflare R2, Ceph) through boto3."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.base import CHUNK_SIZE, ListedObject, ObjectNotFound, StoredObject, check_key

# Larger uploads go in parts of this size, so an upload never holds more than a few parts in memory.
_TRANSFER = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)
_MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Location:
    """A bucket, a key prefix inside it, and how to reach the store."""

    bucket: str
    prefix: str
    endpoint_url: str | None
    public_endpoint_url: str | None
    region: str | None


def _client(endpoint_url: str | None, region: str | None) -> Any:
    # Credentials come from boto3's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, roles).
    # A custom endpoint (MinIO, Ceph, a local test server) is addressed path-style: it has no wildcard DNS.
    config = Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 5},
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3Storage:
    """Objects in a bucket under a prefix; S3 writes are atomic per object."""

    def __init__(self, where: S3Location) -> None:
        self.where = where
        self.client = _client(where.endpoint_url, where.region)
        # Presigning is local computation; a separate client signs for the host browsers reach.
        self.signer = _client(where.public_endpoint_url, where.region) if where.public_endpoint_url else self.client

    @property
    def location(self) -> str:
        prefix = f"/{self.where.prefix}" if self.where.prefix else ""
        at = f" at {self.where.endpoint_url}" if self.where.endpoint_url else ""
        return f"s3://{self.where.bucket}{prefix}{at}"

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.where.prefix}/{key}" if self.where.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.where.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, source: BinaryIO) -> None:
        self.client.upload_fileobj(source, self.where.bucket, self._key(key), Config=_TRANSFER)

    def get(self, key: str) -> bytes:
        body = self._get_object(key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def open(self, key: str) -> StoredObject:
        response = self._get_object(key)
        return StoredObject(size=int(response["ContentLength"]), chunks=_closing_chunks(response["Body"]))

    def _get_object(self, key: str) -> dict[str, Any]:
        try:
            return dict(self.client.get_object(Bucket=self.where.bucket, Key=self._key(key)))
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                raise ObjectNotFound(key) from exc
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.where.bucket, Key=self._key(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.where.bucket, Key=self._key(key))

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        strip = f"{self.where.prefix}/" if self.where.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.where.bucket, Prefix=strip + prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield ListedObject(str(item["Key"]).removeprefix(strip), item["LastModified"])

    def presigned_url(self, key: str, expires_seconds: int, content_type: str) -> str | None:
        params = {"Bucket": self.where.bucket, "Key": self._key(key), "ResponseContentType": content_type}
        return str(self.signer.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_seconds))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _closing_chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK_SIZE)
    finally:
        body.close()
