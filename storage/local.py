"""Local file storage addressed by server-generated keys; writes are atomic."""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from storage.base import (
    CHUNK_SIZE,
    ListedObject,
    ObjectNotFound,
    StoredObject,
    check_key,
    enhanced_key,
    original_key,
    read_chunks,
)

__all__ = ["LocalStorage", "ObjectNotFound", "enhanced_key", "original_key"]


class LocalStorage:
    """Objects as files under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return f"file://{self.root.resolve()}"

    def path_for(self, key: str) -> Path:
        """Return the file path of a key."""
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Store bytes under a key, replacing any previous object atomically."""
        self._write(key, lambda handle: handle.write(data))

    def put_file(self, key: str, source: BinaryIO) -> None:
        """Copy a file's remaining content under a key, atomically, in chunks."""
        self._write(key, lambda handle: shutil.copyfileobj(source, handle, CHUNK_SIZE))

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> None:
        target = self.path_for(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        """Return the bytes stored under a key."""
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def open(self, key: str) -> StoredObject:
        """The file under a key, read in chunks; the file is closed when the chunks are exhausted or closed."""
        try:
            handle = self.path_for(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        return StoredObject(size=os.fstat(handle.fileno()).st_size, chunks=_closing_chunks(handle))

    def exists(self, key: str) -> bool:
        """Tell whether an object is stored under a key."""
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        """Remove an object if present."""
        self.path_for(key).unlink(missing_ok=True)

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        """Files under the root whose key starts with the prefix (unfinished writes' temporary files included)."""
        top = self.root / prefix.split("/", 1)[0]
        if not top.is_dir():
            return
        for path in top.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and path.is_file():
                yield ListedObject(key, datetime.fromtimestamp(path.stat().st_mtime, UTC))

    def presigned_url(self, key: str, expires_seconds: int, content_type: str) -> str | None:
        """Files have no URL of their own: the API streams them."""
        return None


def _closing_chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        yield from read_chunks(handle)
