"""What each ledger row was for, read from the rows its reference names: a charge's batch (`reference` is the batch
id) and a refund's job (`job:{id}`), with their album and photo as they are now (None once deleted)."""

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from db.models import Album, Batch, EnhancementJob, Image, LedgerType, TokenTransaction

REFUND_PREFIX = "job:"


@dataclass(frozen=True)
class LedgerContext:
    batch_id: str
    album_id: str | None
    album_name: str | None
    tier: str
    images: int | None  # how many photos a charge paid for; None for a refund (one photo)
    image_id: str | None = None
    image_filename: str | None = None


def _job_id_of(row: TokenTransaction) -> str | None:
    if row.type == LedgerType.REFUND and row.reference and row.reference.startswith(REFUND_PREFIX):
        return row.reference.removeprefix(REFUND_PREFIX)
    return None


def ledger_contexts(session: Session, user_id: str, rows: list[TokenTransaction]) -> dict[int, LedgerContext]:
    """The context of each row that has one (charges and refunds of this user's batches), by row id; a handful of
    queries for a whole page of rows."""
    job_ids = {job_id for row in rows if (job_id := _job_id_of(row)) is not None}
    jobs = {
        job.id: job
        for job in session.exec(
            select(EnhancementJob).where(col(EnhancementJob.id).in_(job_ids), col(EnhancementJob.user_id) == user_id)
        )
    }
    charged = {row.reference for row in rows if row.type == LedgerType.CONSUME and row.reference}
    batch_ids = charged | {job.batch_id for job in jobs.values()}
    batches = {
        batch.id: batch
        for batch in session.exec(select(Batch).where(col(Batch.id).in_(batch_ids), col(Batch.user_id) == user_id))
    }
    album_ids = {batch.album_id for batch in batches.values() if batch.album_id is not None}
    albums = {album.id: album for album in session.exec(select(Album).where(col(Album.id).in_(album_ids)))}
    image_ids = {job.image_id for job in jobs.values() if job.image_id is not None}
    filenames = dict(session.exec(select(Image.id, Image.original_filename).where(col(Image.id).in_(image_ids))).all())
    counts = dict(
        session.exec(
            select(EnhancementJob.batch_id, func.count())
            .where(col(EnhancementJob.batch_id).in_(charged & batches.keys()))
            .group_by(col(EnhancementJob.batch_id))
        ).all()
    )

    def of_batch(batch: Batch, images: int | None, image_id: str | None = None) -> LedgerContext:
        album = albums.get(batch.album_id) if batch.album_id is not None else None
        return LedgerContext(
            batch_id=batch.id,
            album_id=album.id if album else None,
            album_name=album.name if album else None,
            tier=batch.tier,
            images=images,
            image_id=image_id,
            image_filename=filenames.get(image_id) if image_id is not None else None,
        )

    contexts: dict[int, LedgerContext] = {}
    for row in rows:
        assert row.id is not None
        job = jobs.get(_job_id_of(row) or "")
        if job is not None and job.batch_id in batches:
            contexts[row.id] = of_batch(batches[job.batch_id], None, job.image_id)
        elif row.type == LedgerType.CONSUME and row.reference in batches:
            contexts[row.id] = of_batch(batches[row.reference], counts.get(row.reference, 0))
    return contexts
