"""The enhanced photos of an album as one zip: the newest result of each image, named after its original."""

import re
import tempfile
import zipfile
from dataclasses import dataclass
from typing import IO

from sqlmodel import Session, col, select

from db.models import EnhancementJob, Image, JobStatus
from storage.base import Storage

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
# Up to this size the zip is built in memory; a bigger one spills to a temporary file.
_IN_MEMORY_BYTES = 16 * 1024 * 1024


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
        extension = job.enhanced_key.rsplit(".", 1)[-1]  # the format the result was written in
        name, n = f"{base}.{extension}", 2
        while name in used:
            name, n = f"{base}-{n}.{extension}", n + 1
        used.add(name)
        files.append(ResultFile(name, job.enhanced_key))
    return files


def write_zip(storage: Storage, files: list[ResultFile]) -> IO[bytes]:
    """The zip, rewound; images are stored as they are (compressing them again gains nothing)."""
    out = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES)  # noqa: SIM115  (returned open)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in files:
            archive.writestr(file.name, storage.get(file.key))
    out.seek(0)
    return out
