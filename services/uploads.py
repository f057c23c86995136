"""Checking and storing uploaded originals: nothing is stored unless every file is a valid image."""

import re
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.errors import InvalidRequest
from db.models import Image, new_id
from imaging import ImageInfo, InvalidImageError, probe_image
from storage.local import LocalStorage, original_key

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class CheckedUpload:
    data: bytes
    info: ImageInfo
    filename: str | None


def display_name(filename: str | None) -> str | None:
    """The upload's name for display only (it never reaches a storage path)."""
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return _UNPRINTABLE.sub("", base)[:255] or None


def check_upload(data: bytes, filename: str | None, max_pixels: int) -> CheckedUpload:
    """Probe one file; a non-image, truncated file or pixel bomb is refused with a 400."""
    name = display_name(filename) or "upload"
    if not data:
        raise InvalidRequest(f"File '{name}' is empty")
    try:
        info = probe_image(data, max_pixels)
    except InvalidImageError as exc:
        raise InvalidRequest(f"File '{name}' is not a valid image: {exc}") from exc
    return CheckedUpload(data=data, info=info, filename=display_name(filename))


def store_uploads(session: Session, storage: LocalStorage, album_id: str, checked: list[CheckedUpload]) -> list[Image]:
    """Write the originals and add their rows (the caller commits)."""
    last = session.exec(select(func.max(Image.sort_order)).where(col(Image.album_id) == album_id)).one()
    next_order = (last if last is not None else -1) + 1
    images = []
    for offset, upload in enumerate(checked):
        image_id = new_id()
        key = original_key(album_id, image_id, upload.info.format)
        storage.put(key, upload.data)
        images.append(
            Image(
                id=image_id,
                album_id=album_id,
                original_key=key,
                original_filename=upload.filename,
                width=upload.info.width,
                height=upload.info.height,
                format=upload.info.format,
                size_bytes=len(upload.data),
                sort_order=next_order + offset,
            )
        )
    session.add_all(images)
    session.flush()
    return images
