"""Planning and charging an album's enhancement batch, inside the caller's transaction."""

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col, select

from core.errors import DomainError, InvalidRequest, NotFound
from core.vocabulary import TIERS, OutputFormat
from db import ledger
from db.models import (
    IN_FLIGHT_STATUSES,
    Album,
    Batch,
    EnhancementJob,
    Image,
    JobStatus,
    Tier,
)


@dataclass(frozen=True)
class BatchRequest:
    """An enhance request as the rules see it: whose album, which tier, whether to skip what is done or in flight at
    that tier, and which of its images (None: all of them)."""

    user_id: str
    album_id: str
    tier: Tier
    skip_already_enhanced: bool
    image_ids: tuple[str, ...] | None = None
    # How the results are written: the format, and whether the location stays in their metadata.
    output_format: OutputFormat = OutputFormat.JPEG
    keep_location: bool = False


@dataclass(frozen=True)
class BatchPlan:
    """The contract's rules applied to an album's images at a tier, with nothing charged: what an enhance would
    count, skip and queue now, what that costs, and the balance it would be taken from."""

    tier: Tier
    total_images: int
    to_enhance: list[Image]
    balance: int
    max_batch_size: int

    @property
    def skipped(self) -> int:
        return self.total_images - len(self.to_enhance)

    @property
    def cost_each(self) -> int:
        return TIERS[self.tier].cost

    @property
    def total_cost(self) -> int:
        return self.cost_each * len(self.to_enhance)

    def refusal(self) -> DomainError | None:
        """The contract's refusal of this plan, if any: more images than a batch takes, or too few tokens. A plan
        with nothing to enhance is never refused (nothing is charged)."""
        count = len(self.to_enhance)
        if count == 0:
            return None
        if count > self.max_batch_size:
            return InvalidRequest(
                f"Too many images to enhance: {count} (max {self.max_batch_size} per batch)",
                totalImages=self.total_images,
                toEnhance=count,
                maxBatchSize=self.max_batch_size,
            )
        if self.total_cost > self.balance:
            return ledger.insufficient_tokens(self.total_cost, count, self.balance)
        return None


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


@dataclass(frozen=True)
class Quote:
    """What an enhance with the same request would do now: its plan (None when the album's images allow none) and
    the error it would answer instead (None: it would be accepted)."""

    balance: int
    plan: BatchPlan | None
    refusal: DomainError | None


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


def plan_batch(session: Session, request: BatchRequest, max_batch_size: int) -> BatchPlan:
    """Apply the contract's rules after ownership: the album's images (an empty album: 404), the named ones (each
    must be in the album: 400), the skip filter, and the balance the cost would come from.

    With `image_ids`, only those images are considered (and counted in `total_images`).
    """
    total = list(session.exec(select(Image.id).where(col(Image.album_id) == request.album_id)).all())
    if not total:
        raise NotFound("No images found in album")
    if request.image_ids is not None:
        # Only the caller's own ids are echoed back, so this says nothing about other albums.
        unknown = sorted(set(request.image_ids) - set(total))
        if unknown:
            raise InvalidRequest("Some imageIds are not images of this album", unknownImageIds=unknown)
        total = list(request.image_ids)
    to_enhance = images_to_enhance(
        session, request.album_id, request.tier, request.skip_already_enhanced, request.image_ids
    )
    balance = ledger.balance(session, request.user_id)
    return BatchPlan(request.tier, len(total), to_enhance, balance, max_batch_size)


def quote(session: Session, request: BatchRequest, max_batch_size: int) -> Quote:
    """What plan_and_charge would do with the same request now, by the same rules, reading only."""
    try:
        plan = plan_batch(session, request, max_batch_size)
    except (NotFound, InvalidRequest) as refusal:  # the album's images allow no plan at all
        return Quote(ledger.balance(session, request.user_id), None, refusal)
    return Quote(plan.balance, plan, plan.refusal())


def plan_and_charge(session: Session, request: BatchRequest, max_batch_size: int, execution_mode: str) -> PlannedBatch:
    """Plan (plan_batch), refuse what the contract refuses, then charge and write the batch and its job rows, in
    the caller's transaction. The album's row lock serialises requests on one album; the conditional debit
    (ledger.consume) still refuses a balance that another album's charge emptied meanwhile."""
    lock_album(session, request.album_id)
    plan = plan_batch(session, request, max_batch_size)
    to_enhance = plan.to_enhance
    if not to_enhance:
        return PlannedBatch(plan.total_images, plan.skipped, [], 0, plan.balance, None, [])
    refusal = plan.refusal()
    if refusal is not None:
        raise refusal
    batch_id = new_batch_id(session, request.album_id)
    new_balance = ledger.consume(session, request.user_id, plan.total_cost, batch_id, len(to_enhance))
    batch = Batch(
        id=batch_id,
        album_id=request.album_id,
        user_id=request.user_id,
        tier=request.tier,
        execution_mode=execution_mode,
        tokens_charged=plan.total_cost,
        output_format=request.output_format,
        keep_location=request.keep_location,
    )
    session.add(batch)
    session.flush()
    jobs = [
        EnhancementJob(
            image_id=image.id,
            user_id=request.user_id,
            batch_id=batch_id,
            position=position,
            tier=request.tier,
            tokens_cost=plan.cost_each,
        )
        for position, image in enumerate(to_enhance)
    ]
    session.add_all(jobs)
    session.flush()
    return PlannedBatch(plan.total_images, plan.skipped, to_enhance, plan.total_cost, new_balance, batch, jobs)
