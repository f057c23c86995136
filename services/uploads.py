"""Checking and storing uploaded originals: nothing is stored unless every file is a valid image."""

import re
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.errors import InvalidRequest
from db.models import Image, new_id
from imaging import ImageInfo, InvalidImageError, probe_image
from storage.base import Storage, original_key

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class CheckedUpload:
    source: BinaryIO  # rewound: it is read once more, in chunks, when stored
    size: int
    info: ImageInfo
    filename: str | None


def display_name(filename: str | None) -> str | None:
    """The upload's name for display only (it never reaches a storage path)."""
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return _UNPRINTABLE.sub("", base)[:255] or None


def check_upload(source: BinaryIO, filename: str | None, max_pixels: int) -> CheckedUpload:
    """Probe one file; a non-image, truncated file or pixel bomb is refused with a 400.

    Only this file's bytes are in memory while it is probed; the others stay in their spooled upload files."""
    name = display_name(filename) or "upload"
    data = source.read()
    if not data:
        raise InvalidRequest(f"File '{name}' is empty")
    try:
        info = probe_image(data, max_pixels)
    except InvalidImageError as exc:
        raise InvalidRequest(f"File '{name}' is not a valid image: {exc}") from exc
    source.seek(0)
    return CheckedUpload(source=source, size=len(data), info=info, filename=display_name(filename))


def store_uploads(session: Session, storage: Storage, album_id: str, checked: list[CheckedUpload]) -> list[Image]:
    """Write the originals and add their rows (the caller commits)."""
    last = session.exec(select(func.max(Image.sort_order)).where(col(Image.album_id) == album_id)).one()
    next_order = (last if last is not None else -1) + 1
    images = []
    for offset, upload in enumerate(checked):
        image_id = new_id()
        key = original_key(album_id, image_id, upload.info.format)
        storage.put_file(key, upload.source)
        images.append(
            Image(
                id=image_id,
                album_id=album_id,
                original_key=key,
                original_filename=upload.filename,
                width=upload.info.width,
                height=upload.info.height,
                format=upload.info.format,
                size_bytes=upload.size,
                sort_order=next_order + offset,
            )
        )
    session.add_all(images)
    session.flush()
    return images
