"""Deleting images and albums: refused while a batch could still touch them; nothing is charged or refunded.

Jobs and batches stay as the history behind the ledger (their `image_id` / `album_id` become NULL through the
foreign keys), so every `job:{id}` and batch reference of a ledger row still resolves and balance = sum(ledger)
holds. The stored files (original, thumbnail, enhanced results) are removed after the rows are committed.
"""

import logging
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from core.errors import Conflict
from core.vocabulary import FINAL_BATCH_STATUSES, IN_FLIGHT_STATUSES
from db.models import Album, Batch, EnhancementJob, Image
from services.enhance import lock_album
from services.thumbnails import failure_key, thumbnail_keys
from storage.base import Storage

log = logging.getLogger(__name__)

IN_FLIGHT = "An enhancement of this {what} is in progress; cancel its batch or wait until it ends"


@dataclass(frozen=True)
class Removed:
    """What a deletion took away: the storage keys to remove once the rows are gone."""

    images: int
    storage_keys: list[str]


def _busy_images(session: Session, image_ids: list[str]) -> bool:
    """True if any of the images has a job in flight or belongs to a batch that has not ended."""
    row = session.exec(
        select(EnhancementJob.id)
        .join(Batch, col(Batch.id) == col(EnhancementJob.batch_id))
        .where(
            col(EnhancementJob.image_id).in_(image_ids),
            col(EnhancementJob.status).in_(IN_FLIGHT_STATUSES) | col(Batch.status).not_in(FINAL_BATCH_STATUSES),
        )
        .limit(1)
    ).first()
    return row is not None


def _album_busy(session: Session, album_id: str) -> bool:
    row = session.exec(
        select(Batch.id).where(col(Batch.album_id) == album_id, col(Batch.status).not_in(FINAL_BATCH_STATUSES)).limit(1)
    ).first()
    return row is not None


def _remove_images(session: Session, images: list[Image], thumbnail_size: int) -> Removed:
    ids = [image.id for image in images]
    results = session.exec(
        select(EnhancementJob.enhanced_key).where(
            col(EnhancementJob.image_id).in_(ids), col(EnhancementJob.enhanced_key).is_not(None)
        )
    ).all()
    keys = [key for key in results if key is not None]
    keys += [image.original_key for image in images]
    keys += [key for image_id in ids for key in thumbnail_keys(image_id, thumbnail_size)]
    keys += [failure_key(image_id, thumbnail_size) for image_id in ids]
    # The jobs keep their cost, status and refund; only the way to the deleted photo goes.
    session.exec(update(EnhancementJob).where(col(EnhancementJob.image_id).in_(ids)).values(enhanced_key=None))
    session.exec(delete(Image).where(col(Image.id).in_(ids)))
    return Removed(len(ids), keys)


def delete_image(session: Session, image: Image, thumbnail_size: int) -> Removed:
    """Delete one image (the caller commits, then removes the returned storage keys)."""
    lock_album(session, image.album_id)  # no enhance request can plan this image meanwhile
    if _busy_images(session, [image.id]):
        raise Conflict(IN_FLIGHT.format(what="image"))
    return _remove_images(session, [image], thumbnail_size)


def delete_album(session: Session, album: Album, thumbnail_size: int) -> Removed:
    """Delete an album and all its images (the caller commits, then removes the returned storage keys)."""
    lock_album(session, album.id)
    images = list(session.exec(select(Image).where(col(Image.album_id) == album.id)))
    if _album_busy(session, album.id) or (images and _busy_images(session, [image.id for image in images])):
        raise Conflict(IN_FLIGHT.format(what="album"))
    removed = _remove_images(session, images, thumbnail_size)
    session.exec(delete(Album).where(col(Album.id) == album.id))
    return removed


def remove_objects(storage: Storage, keys: list[str]) -> None:
    """Remove stored files after their rows are committed: a file left behind by a crash here is only garbage, a
    row without its file would be a bug."""
    for key in keys:
        try:
            storage.delete(key)
        except Exception:  # any backend's error: the rows are gone, the remaining files are still removed
            log.warning("could not remove stored object %s", key, exc_info=True)
