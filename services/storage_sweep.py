"""Finding and removing stored objects that no row refers to.

Every write path leaves nothing behind on its own (uploads and thumbnails check their row again after writing and
clean up, a losing attempt deletes its own result), but a process killed between writing an object and committing
its row leaves one. The sweep lists the storage first and reads the rows after, and spares anything younger than
the grace period, so an object whose row is about to be committed is never taken for an orphan.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from db.models import EnhancementJob, Image, utcnow
from storage.base import ListedObject, Storage

log = logging.getLogger(__name__)

# Everything under these prefixes belongs to a row; anything else in the storage (the deployment marker) is kept.
ORIGINALS, RESULTS, THUMBNAILS = "originals/", "enhanced/", "thumbnails/"


@dataclass
class SweepReport:
    examined: int = 0
    orphans: list[str] = field(default_factory=list)
    removed: int = 0


@dataclass(frozen=True)
class _Referenced:
    keys: set[str]
    image_ids: set[str]


def _referenced(engine: Engine) -> _Referenced:
    with Session(engine) as session:
        originals = session.exec(select(Image.id, Image.original_key)).all()
        results = session.exec(
            select(EnhancementJob.enhanced_key).where(col(EnhancementJob.enhanced_key).is_not(None))
        ).all()
    keys = {key for _, key in originals} | {key for key in results if key is not None}
    return _Referenced(keys, {image_id for image_id, _ in originals})


def _thumbnail_owner(key: str) -> str:
    """The image id in `thumbnails/{image_id}-{size}-v{version}` (with `.failed` for a marker, `.jpg` in version 1)."""
    return key.removeprefix(THUMBNAILS).rsplit("-", 2)[0]


def _is_orphan(listed: ListedObject, referenced: _Referenced) -> bool:
    if listed.key.startswith(THUMBNAILS):
        return _thumbnail_owner(listed.key) not in referenced.image_ids
    return listed.key not in referenced.keys


def find_orphans(engine: Engine, storage: Storage, grace_seconds: float, now: datetime | None = None) -> SweepReport:
    """The objects under the swept prefixes that no row refers to and that are older than the grace period."""
    cutoff = (now or utcnow()) - timedelta(seconds=grace_seconds)
    listed = [item for prefix in (ORIGINALS, RESULTS, THUMBNAILS) for item in storage.list_objects(prefix)]
    referenced = _referenced(engine)  # after the listing: a row committed meanwhile is seen
    report = SweepReport(examined=len(listed))
    report.orphans = sorted(item.key for item in listed if item.modified < cutoff and _is_orphan(item, referenced))
    return report


def sweep(engine: Engine, storage: Storage, grace_seconds: float, dry_run: bool = False) -> SweepReport:
    """Remove (or with `dry_run` only list) the orphans."""
    report = find_orphans(engine, storage, grace_seconds)
    if dry_run:
        return report
    for key in report.orphans:
        try:
            storage.delete(key)
            report.removed += 1
        except Exception:  # any backend's error: the next sweep tries again
            log.warning("sweep could not remove %s", key, exc_info=True)
    if report.removed:
        log.info("storage sweep removed %d objects no row refers to", report.removed)
    return report
