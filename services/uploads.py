"""Checking and storing uploaded originals: nothing is stored unless every file is a valid image.

Costs are bounded per request and per process: the files' headers are read first and their declared pixels
checked against a per-upload budget before anything is decoded; only one file's bytes are in memory at a time
(the framework spools the rest to disk); and at most a few decodes run at once in the whole process, since a
59.99 MP image takes about 240 MB to decode.
"""

import re
import threading
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image as PILImage
from sqlalchemy import func
from sqlmodel import Session, col, select

from core.errors import InvalidRequest, NotFound, ServiceUnavailable
from db.models import Album, Image, new_id
from imaging import ImageInfo, InvalidImageError, probe_image
from services.enhance import lock_album
from storage.base import Storage, original_key

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class UploadedFile:
    file: BinaryIO  # spooled by the framework: in memory up to 1 MB, on disk beyond
    filename: str | None

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()


@dataclass(frozen=True)
class CheckedUpload:
    source: UploadedFile
    size: int
    info: ImageInfo
    filename: str | None


@dataclass(frozen=True)
class UploadLimits:
    max_image_pixels: int  # per file
    max_upload_pixels: int  # all files of one request, as their headers declare


class DecodeSlots:
    """The process-wide number of uploads being decoded at once; waiting longer than `wait_seconds` is a 503."""

    def __init__(self, slots: int, wait_seconds: float) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self.wait_seconds = wait_seconds

    def __enter__(self) -> None:
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise ServiceUnavailable("Server busy checking other uploads; retry shortly", retry_after=1)

    def __exit__(self, *_: object) -> None:
        self._slots.release()


def display_name(filename: str | None) -> str | None:
    """The upload's name for display only (it never reaches a storage path)."""
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return _UNPRINTABLE.sub("", base)[:255] or None


def check_upload(data: bytes, filename: str | None, max_pixels: int) -> ImageInfo:
    """Probe one file; a non-image, truncated file or pixel bomb is refused with a 400."""
    name = display_name(filename) or "upload"
    if not data:
        raise InvalidRequest(f"File '{name}' is empty")
    try:
        return probe_image(data, max_pixels)
    except InvalidImageError as exc:
        raise InvalidRequest(f"File '{name}' is not a valid image: {exc}") from exc


def _declared_pixels(upload: UploadedFile) -> int | None:
    """Width × height from the header alone (nothing is decoded), or None if the header cannot be read."""
    upload.file.seek(0)
    try:
        with PILImage.open(upload.file) as image:
            width, height = image.size
    except Exception:  # unreadable, or a Pillow bomb refusal: check_upload says precisely what is wrong
        return None
    return width * height


def check_uploads(files: list[UploadedFile], limits: UploadLimits, slots: DecodeSlots) -> list[CheckedUpload]:
    """Check a whole upload: the declared pixels of all its files against the budget first, from the headers
    only, then each file (which decodes it). An upload of small files declaring huge images is thus refused in
    milliseconds, and the decoding work of any one request is bounded by the budget."""
    declared = sum(pixels for upload in files if (pixels := _declared_pixels(upload)) is not None)
    if declared > limits.max_upload_pixels:
        raise InvalidRequest(
            f"Upload too large: its images declare {declared / 1e6:.1f} MP in all, at most "
            f"{limits.max_upload_pixels / 1e6:g} MP per upload; send them in several uploads"
        )
    checked = []
    for upload in files:
        with slots:
            data = upload.read()
            info = check_upload(data, upload.filename, limits.max_image_pixels)
        checked.append(CheckedUpload(upload, len(data), info, display_name(upload.filename)))
        del data  # one file's bytes at a time
    return checked


@dataclass(frozen=True)
class StoredOriginal:
    """An original written to storage before its row exists."""

    image_id: str
    key: str
    upload: CheckedUpload


def write_originals(storage: Storage, album_id: str, checked: list[CheckedUpload]) -> list[StoredOriginal]:
    """Write the originals, streamed from their spooled files, before any row is added (so no lock is held while
    they are written). Any failure removes those already written."""
    stored = [
        StoredOriginal(image_id, original_key(album_id, image_id, upload.info.format), upload)
        for image_id, upload in ((new_id(), upload) for upload in checked)
    ]
    try:
        for original in stored:
            original.upload.source.file.seek(0)
            storage.put_file(original.key, original.upload.source.file)
    except BaseException:
        remove_originals(storage, stored)
        raise
    return stored


def remove_originals(storage: Storage, stored: list[StoredOriginal]) -> None:
    """Remove originals whose rows were not committed."""
    for original in stored:
        storage.delete(original.key)


def add_images(session: Session, album_id: str, stored: list[StoredOriginal]) -> list[Image]:
    """Add the rows of written originals under the album's lock (the caller commits, or removes the originals if
    this fails): an album deleted meanwhile is a 404, since a delete commits either before this or after it."""
    lock_album(session, album_id)
    if session.exec(select(Album.id).where(col(Album.id) == album_id)).first() is None:
        raise NotFound("Album not found")
    return _add_rows(session, album_id, stored)


def _add_rows(session: Session, album_id: str, stored: list[StoredOriginal]) -> list[Image]:
    last = session.exec(select(func.max(Image.sort_order)).where(col(Image.album_id) == album_id)).one()
    next_order = (last if last is not None else -1) + 1
    images = [
        Image(
            id=original.image_id,
            album_id=album_id,
            original_key=original.key,
            original_filename=original.upload.filename,
            width=original.upload.info.width,
            height=original.upload.info.height,
            format=original.upload.info.format,
            size_bytes=original.upload.size,
            sort_order=next_order + offset,
        )
        for offset, original in enumerate(stored)
    ]
    session.add_all(images)
    session.flush()
    return images
