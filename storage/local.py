"""Local file storage addressed by server-generated keys; writes are atomic."""

import os
import re
import tempfile
from pathlib import Path

_SAFE_KEY = re.compile(r"^[a-z0-9]+(/[A-Za-z0-9._-]+)+$")


class ObjectNotFound(Exception):
    """No object is stored under the key."""


def _check_key(key: str) -> str:
    if not _SAFE_KEY.match(key) or ".." in key:
        raise ValueError(f"unsafe storage key: {key!r}")
    return key


class LocalStorage:
    """Objects as files under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, key: str) -> Path:
        """Return the file path of a key."""
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Store bytes under a key, replacing any previous object atomically."""
        target = self.path_for(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
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

    def exists(self, key: str) -> bool:
        """Tell whether an object is stored under a key."""
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        """Remove an object if present."""
        self.path_for(key).unlink(missing_ok=True)


def original_key(album_id: str, image_id: str, image_format: str) -> str:
    """Storage key of an uploaded original (never derived from the upload's filename)."""
    return f"originals/{album_id}/{image_id}.{image_format.lower()}"


def enhanced_key(job_id: str) -> str:
    """Storage key of a job's enhanced JPEG."""
    return f"enhanced/{job_id}.jpg"
