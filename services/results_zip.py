"""The enhanced photos of an album as one zip: the newest result of each image, named after its original.

The archive is written as it is sent: each result is read from storage in chunks and passed on (stored, not
compressed: JPEGs do not compress), so the first byte leaves at once and neither memory nor disk holds the whole
archive. A result that is gone by the time it is read (its image deleted meanwhile) is left out and named in a
note inside the archive, so the download still succeeds.
"""

import io
import logging
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from sqlmodel import Session, col, select

from core.vocabulary import result_extension
from db.models import EnhancementJob, Image, JobStatus
from storage.base import ObjectNotFound, Storage

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
MISSING_NOTE = "MISSING.txt"


@dataclass(frozen=True)
class ResultFile:
    name: str
    key: str


def safe_stem(filename: str | None, fallback: str) -> str:
    """A file name without extension or characters that mean something to a file system or a shell."""
    stem = (filename or "").rsplit(".", 1)[0]
    return _UNSAFE.sub("_", stem).strip(" ._")[:80] or fallback


def result_files(session: Session, album_id: str) -> list[ResultFile]:
    """One entry per image with a result: its newest completed enhancement, with a unique file name."""
    rows = session.exec(
        select(Image, EnhancementJob)
        .join(EnhancementJob, col(EnhancementJob.image_id) == col(Image.id))
        .where(
            col(Image.album_id) == album_id,
            col(EnhancementJob.status) == JobStatus.COMPLETED,
            col(EnhancementJob.enhanced_key).is_not(None),
        )
        .order_by(col(Image.sort_order), col(Image.id), col(EnhancementJob.finished_at).desc())
    ).all()
    files: list[ResultFile] = []
    seen_images: set[str] = set()
    used: set[str] = set()
    for image, job in rows:
        if image.id in seen_images or job.enhanced_key is None:
            continue
        seen_images.add(image.id)
        base = f"{safe_stem(image.original_filename, image.id[:8])}-{job.tier.removeprefix('TIER_')}"
        extension = result_extension(job.enhanced_key)  # the format the result was written in
        name, n = f"{base}.{extension}", 2
        while name in used:
            name, n = f"{base}-{n}.{extension}", n + 1
        used.add(name)
        files.append(ResultFile(name, job.enhanced_key))
    return files


class _Sink(io.RawIOBase):
    """Where the zip writer writes: bytes kept until the stream takes them. It cannot seek, so the writer puts
    each entry's sizes after its data (a data descriptor) instead of going back to its header."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        chunk = bytes(data)  # type: ignore[call-overload]  # the writer passes bytes-like objects
        self._parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_stream(storage: Storage, files: list[ResultFile]) -> Iterator[bytes]:
    """The zip's bytes, as each result is read."""
    sink = _Sink()
    missing: list[str] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in files:
            try:
                stored = storage.open(file.key)
            except ObjectNotFound:
                missing.append(file.name)
                continue
            entry = zipfile.ZipInfo(file.name, date_time=time.localtime()[:6])
            entry.file_size = stored.size  # the writer picks ZIP64 from it for a result over 4 GB
            try:
                with archive.open(entry, "w") as out:
                    for chunk in stored.chunks:
                        out.write(chunk)
                        yield sink.take()
            finally:
                close = getattr(stored.chunks, "close", None)
                if close is not None:
                    close()
        if missing:
            log.info("zip sent without %d results no longer stored: %s", len(missing), ", ".join(missing))
            archive.writestr(MISSING_NOTE, missing_note(missing))
    yield sink.take()


def missing_note(names: list[str]) -> str:
    return "These enhanced photos were deleted while the archive was being made, so they are not in it:\n" + "".join(
        f"{name}\n" for name in names
    )
