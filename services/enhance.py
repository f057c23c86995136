"""Planning and charging an album's enhancement batch, inside the caller's transaction."""

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.errors import InvalidRequest, NotFound
from core.vocabulary import TIERS
from db import ledger
from db.models import (
    IN_FLIGHT_STATUSES,
    Album,
    Batch,
    EnhancementJob,
    Image,
    JobStatus,
    Tier,
    User,
)


@dataclass(frozen=True)
class PlannedBatch:
    """What the enhance endpoint reports; `batch` is None when nothing needed enhancing."""

    total_images: int
    skipped: int
    to_enhance: list[Image]
    total_cost: int
    new_balance: int
    batch: Batch | None
    jobs: list[EnhancementJob]


def lock_album(session: Session, album_id: str) -> None:
    """Serialise enhance requests on one album (a row lock on PostgreSQL, the write lock on SQLite)."""
    session.exec(update(Album).where(col(Album.id) == album_id).values(id=Album.id))


def images_to_enhance(
    session: Session, album_id: str, tier: Tier, skip_already_enhanced: bool, image_ids: Sequence[str] | None = None
) -> list[Image]:
    """The album's images (or those of them named), minus those done or in flight at this tier when skipping."""
    query = select(Image).where(col(Image.album_id) == album_id)
    if image_ids is not None:
        query = query.where(col(Image.id).in_(image_ids))
    images = list(session.exec(query.order_by(col(Image.sort_order), col(Image.created_at), col(Image.id))))
    if not skip_already_enhanced:
        return images
    covered = set(
        session.exec(
            select(EnhancementJob.image_id).where(
                col(EnhancementJob.image_id).in_([image.id for image in images]),
                col(EnhancementJob.tier) == tier,
                col(EnhancementJob.status).in_([JobStatus.COMPLETED, *IN_FLIGHT_STATUSES]),
            )
        )
    )
    return [image for image in images if image.id not in covered]


def new_batch_id(session: Session, album_id: str) -> str:
    """`album-{albumId}-{epochMillis}`, moved forward a millisecond while taken (the album lock makes this safe)."""
    millis = time.time_ns() // 1_000_000
    while session.get(Batch, f"album-{album_id}-{millis}") is not None:
        millis += 1
    return f"album-{album_id}-{millis}"


def plan_and_charge(
    session: Session,
    *,
    user_id: str,
    album_id: str,
    tier: Tier,
    skip_already_enhanced: bool,
    max_batch_size: int,
    execution_mode: str,
    image_ids: Sequence[str] | None = None,
) -> PlannedBatch:
    """Apply the contract's rules after ownership: images, skip filter, size, cost, balance, charge, job rows.

    With `image_ids`, only those images are considered (and counted in `total_images`); each must be in the album.
    """
    lock_album(session, album_id)
    total = list(session.exec(select(Image.id).where(col(Image.album_id) == album_id)).all())
    if not total:
        raise NotFound("No images found in album")
    if image_ids is not None:
        # Only the caller's own ids are echoed back, so this says nothing about other albums.
        unknown = sorted(set(image_ids) - set(total))
        if unknown:
            raise InvalidRequest("Some imageIds are not images of this album", unknownImageIds=unknown)
        total = list(image_ids)
    to_enhance = images_to_enhance(session, album_id, tier, skip_already_enhanced, image_ids)
    skipped = len(total) - len(to_enhance)
    if not to_enhance:
        balance = session.exec(select(User.token_balance).where(col(User.id) == user_id)).one()
        return PlannedBatch(len(total), skipped, [], 0, balance, None, [])
    if len(to_enhance) > max_batch_size:
        raise InvalidRequest(
            f"Too many images to enhance: {len(to_enhance)} (max {max_batch_size} per batch)",
            totalImages=len(total),
            toEnhance=len(to_enhance),
            maxBatchSize=max_batch_size,
        )
    cost_each = TIERS[tier].cost
    total_cost = cost_each * len(to_enhance)
    batch_id = new_batch_id(session, album_id)
    new_balance = ledger.consume(session, user_id, total_cost, batch_id, len(to_enhance))
    batch = Batch(
        id=batch_id,
        album_id=album_id,
        user_id=user_id,
        tier=tier,
        execution_mode=execution_mode,
        tokens_charged=total_cost,
    )
    session.add(batch)
    session.flush()
    jobs = [
        EnhancementJob(
            image_id=image.id,
            user_id=user_id,
            batch_id=batch_id,
            position=position,
            tier=tier,
            tokens_cost=cost_each,
        )
        for position, image in enumerate(to_enhance)
    ]
    session.add_all(jobs)
    session.flush()
    return PlannedBatch(len(total), skipped, to_enhance, total_cost, new_balance, batch, jobs)
