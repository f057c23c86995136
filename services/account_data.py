"""Leaving with one's data: the export (originals, results and the token ledger in one zip) and account deletion.

A deleted account's photos, results and thumbnails leave storage, its sessions, keys and mailed links are
revoked, and its row stays, anonymised (no email, no password), under its ledger rows and batches: every balance
still equals the sum of its ledger, and the service's totals still add up.
"""

import csv
import io
import tempfile
import zipfile
from dataclasses import dataclass
from typing import IO

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from core.errors import Conflict, InvalidRequest
from core.vocabulary import FINAL_BATCH_STATUSES, result_extension
from db.models import (
    AccountToken,
    Album,
    ApiKey,
    Batch,
    EnhancementJob,
    IdempotencyRecord,
    Image,
    JobStatus,
    RateLimitHit,
    TokenTransaction,
    User,
    UserSession,
    WebhookCallbackSecret,
    WebhookEndpoint,
    utcnow,
)
from db.session import transaction
from services import passwords
from services.deletion import delete_album
from services.results_zip import safe_stem
from storage.base import Storage

BATCH_RUNNING = "A batch of yours is still running: cancel it or wait until it ends, then delete the account"
_IN_MEMORY_BYTES = 16 * 1024 * 1024
LEDGER_COLUMNS = ("id", "created_at", "type", "amount", "balance_after", "reference")


@dataclass(frozen=True)
class ExportFile:
    name: str
    key: str


def _unique(name: str, used: set[str]) -> str:
    stem, dot, ext = name.rpartition(".")
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{stem}-{n}{dot}{ext}", n + 1
    used.add(candidate)
    return candidate


def export_files(session: Session, user_id: str) -> list[ExportFile]:
    """Every original and every stored result of the user's albums, one folder per album."""
    albums = session.exec(select(Album).where(col(Album.owner_id) == user_id).order_by(col(Album.created_at))).all()
    files: list[ExportFile] = []
    used: set[str] = set()
    for album in albums:
        folder = f"{safe_stem(album.name, 'album')}-{album.id[:8]}"
        images = session.exec(
            select(Image).where(col(Image.album_id) == album.id).order_by(col(Image.sort_order), col(Image.id))
        ).all()
        for image in images:
            stem = safe_stem(image.original_filename, image.id[:8])
            files.append(
                ExportFile(_unique(f"originals/{folder}/{stem}.{image.format.lower()}", used), image.original_key)
            )
            jobs = session.exec(
                select(EnhancementJob).where(
                    col(EnhancementJob.image_id) == image.id,
                    col(EnhancementJob.status) == JobStatus.COMPLETED,
                    col(EnhancementJob.enhanced_key).is_not(None),
                )
            ).all()
            for job in jobs:
                assert job.enhanced_key is not None
                tier = job.tier.removeprefix("TIER_")
                name = f"results/{folder}/{stem}-{tier}.{result_extension(job.enhanced_key)}"
                files.append(ExportFile(_unique(name, used), job.enhanced_key))
    return files


def ledger_csv(session: Session, user_id: str) -> str:
    rows = session.exec(
        select(TokenTransaction).where(col(TokenTransaction.user_id) == user_id).order_by(col(TokenTransaction.id))
    ).all()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(LEDGER_COLUMNS)
    for row in rows:
        writer.writerow([row.id, row.created_at.isoformat(), row.type, row.amount, row.balance_after, row.reference])
    return out.getvalue()


def write_export(storage: Storage, files: list[ExportFile], ledger: str) -> IO[bytes]:
    """The zip, rewound: photos stored as they are (already compressed), streamed from storage chunk by chunk."""
    out = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES)  # noqa: SIM115  (returned open)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("ledger.csv", ledger, compress_type=zipfile.ZIP_DEFLATED)
        for file in files:
            stored = storage.open(file.key)
            with archive.open(file.name, "w", force_zip64=True) as target:
                for chunk in stored.chunks:
                    target.write(chunk)
    out.seek(0)
    return out


def check_deletion(user: User, password: str | None, email: str | None) -> None:
    """The person confirms: with their password if they have one, else by typing their email."""
    if user.password_hash is not None:
        if password is None or not passwords.verify_password(user.password_hash, password):
            raise InvalidRequest("Confirm with your current password")
    elif email is None or email.strip().lower() != user.email:
        raise InvalidRequest("Confirm with your account's email address")


def delete_account(session: Session, user_id: str, thumbnail_size: int) -> list[str]:
    """Delete the user's albums and photos, revoke every way in, and anonymise the row; the storage keys to remove
    once this commits. Conflict (nothing changed) while one of the user's batches has not ended."""
    with transaction(session):
        # First write: holds the user's row (PostgreSQL) or the database (SQLite) until the commit, so no enhance
        # of this user can charge meanwhile.
        session.exec(update(User).where(col(User.id) == user_id).values(deleted_at=utcnow()))
        running = session.exec(
            select(Batch.id).where(col(Batch.user_id) == user_id, col(Batch.status).not_in(FINAL_BATCH_STATUSES))
        ).first()
        if running is not None:
            raise Conflict(BATCH_RUNNING)
        keys: list[str] = []
        for album in session.exec(select(Album).where(col(Album.owner_id) == user_id)).all():
            keys += delete_album(session, album, thumbnail_size).storage_keys
        # Results whose photo went before (deleted images leave no key behind, but never count on it).
        leftovers = session.exec(
            select(EnhancementJob.enhanced_key).where(
                col(EnhancementJob.user_id) == user_id, col(EnhancementJob.enhanced_key).is_not(None)
            )
        ).all()
        keys += [key for key in leftovers if key is not None]
        session.exec(update(EnhancementJob).where(col(EnhancementJob.user_id) == user_id).values(enhanced_key=None))
        for table in (UserSession, ApiKey, AccountToken, IdempotencyRecord, RateLimitHit, WebhookCallbackSecret):
            session.exec(delete(table).where(col(table.user_id) == user_id))
        # Webhook endpoints stay as their delivery log's subject, but send nothing more and keep no address or secret.
        session.exec(
            update(WebhookEndpoint)
            .where(col(WebhookEndpoint.user_id) == user_id)
            .values(
                enabled=False,
                disabled_reason="account deleted",
                url="https://deleted.invalid/",
                secret="",
                previous_secret=None,
                description=None,
            )
        )
        session.exec(
            update(User)
            .where(col(User.id) == user_id)
            .values(email=f"deleted-{user_id}@deleted.invalid", password_hash=None, email_verified_at=None)
        )
    return keys
