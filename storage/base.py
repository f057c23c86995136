"""What every storage backend offers, the keys objects are stored under, and the errors backends raise."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

_SAFE_KEY = re.compile(r"^[a-z0-9]+(/[A-Za-z0-9._-]+)+$")

# Streaming reads and writes move this much at a time, so memory stays flat whatever the file size.
CHUNK_SIZE = 1024 * 1024


class ObjectNotFound(Exception):
    """No object is stored under the key."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the storage root or were not built by this module's functions."""
    if not _SAFE_KEY.match(key) or ".." in key:
        raise ValueError(f"unsafe storage key: {key!r}")
    return key


def original_key(album_id: str, image_id: str, image_format: str) -> str:
    """Storage key of an uploaded original (never derived from the upload's filename)."""
    return f"originals/{album_id}/{image_id}.{image_format.lower()}"


def enhanced_key(job_id: str, extension: str = "jpg", attempt: int = 0) -> str:
    """Storage key of a job's enhanced image as one attempt made it, with the extension of its format: each attempt
    writes its own object, so an attempt that loses the race to complete the job can delete its object without
    touching the winner's."""
    return f"enhanced/{job_id}-a{attempt}.{extension}" if attempt else f"enhanced/{job_id}.{extension}"


@dataclass(frozen=True)
class StoredObject:
    """An open object: its size and its bytes as chunks (closing the iterator releases the source)."""

    size: int
    chunks: Iterator[bytes]


@dataclass(frozen=True)
class ListedObject:
    """A stored object's key and when it was last written (timezone-aware)."""

    key: str
    modified: datetime


class Storage(Protocol):
    """Objects addressed by server-generated keys; a write replaces the whole object or nothing."""

    @property
    def location(self) -> str:
        """Where the objects live, for messages (never credentials)."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store bytes under a key."""
        ...

    def put_file(self, key: str, source: BinaryIO) -> None:
        """Store a file's content from its current position, in chunks (never all of it in memory)."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes stored under a key (ObjectNotFound if none)."""
        ...

    def open(self, key: str) -> StoredObject:
        """The object under a key, to stream (ObjectNotFound if none)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under a key."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object if present."""
        ...

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        """Every object whose key starts with `prefix` (e.g. "originals/"), in no particular order."""
        ...

    def presigned_url(self, key: str, expires_seconds: int, content_type: str) -> str | None:
        """A short-lived URL that reads the object without credentials, or None if the backend has none."""
        ...


def read_chunks(source: BinaryIO) -> Iterator[bytes]:
    """A file-like object's remaining content in CHUNK_SIZE pieces."""
    while chunk := source.read(CHUNK_SIZE):
        yield chunk
