"""Checking and storing uploaded originals: nothing is stored unless every file is a valid image."""

import io
import re
from dataclasses import dataclass

from PIL import Image as PILImage
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


@dataclass(frozen=True)
class UploadedFile:
    data: bytes
    filename: str | None


@dataclass(frozen=True)
class UploadLimits:
    max_image_pixels: int  # per file
    max_upload_pixels: int  # all files of one request, as their headers declare


def _declared_pixels(data: bytes) -> int | None:
    """Width × height from the header alone (nothing is decoded), or None if the header cannot be read."""
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # unreadable or a Pillow bomb refusal: check_upload says precisely what is wrong
        return None
    return width * height


def check_uploads(files: list[UploadedFile], limits: UploadLimits) -> list[CheckedUpload]:
    """Check a whole upload: its declared pixels against the request's budget first, from the headers only,
    then each file (which decodes it). Decoding work per request is thus bounded by the budget, so an
    upload of many small files declaring huge images is refused in milliseconds."""
    declared = sum(pixels for f in files if (pixels := _declared_pixels(f.data)) is not None)
    if declared > limits.max_upload_pixels:
        raise InvalidRequest(
            f"Upload too large: its images declare {declared / 1e6:.1f} MP in all, at most "
            f"{limits.max_upload_pixels / 1e6:g} MP per upload; send them in several uploads"
        )
    return [check_upload(f.data, f.filename, limits.max_image_pixels) for f in files]


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
