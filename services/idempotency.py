"""Idempotency-Key handling: the outcome of a key's first request is stored in the database and given again."""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col

from core.errors import Conflict, IdempotencyKeyReused, InvalidRequest
from db.models import IdempotencyRecord, utcnow

MAX_KEY_LENGTH = 255
# A claim with no outcome after this long belongs to a request that died before committing.
STALE_CLAIM = timedelta(seconds=120)


@dataclass(frozen=True)
class StoredOutcome:
    """What the first request with a key stored: the use case's own record of its outcome. Records kept before
    outcomes were stored hold the answer's status (`legacy_status`) and body instead."""

    data: dict[str, Any]
    legacy_status: int | None = None


def request_fingerprint(*parts: object) -> str:
    """A stable hash of what identifies a request (path ids and the normalised body)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> str:
    """Refuse empty or oversized keys."""
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    return key


def claim(session: Session, user_id: str, key: str, fingerprint: str, ttl_seconds: int) -> StoredOutcome | None:
    """Claim the key for this request in the caller's transaction (None), or return the stored outcome.

    The claim is an insert: when another request claims the same key at the same moment, the caller's commit fails
    with IntegrityError; the caller then rolls back and claims again, and finds that request's claim."""
    record = session.get(IdempotencyRecord, (user_id, key))
    now = utcnow()
    if record is not None:
        expired = record.created_at < now - timedelta(seconds=ttl_seconds)
        abandoned = record.response_body is None and record.created_at < now - STALE_CLAIM
        if not (expired or abandoned):
            return _existing(record, fingerprint)
        session.delete(record)
        session.flush()
    session.add(IdempotencyRecord(user_id=user_id, key=key, request_hash=fingerprint))
    return None


def _existing(record: IdempotencyRecord, fingerprint: str) -> StoredOutcome:
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused("Idempotency-Key was already used with a different request")
    if record.response_body is None:
        raise Conflict("A request with this Idempotency-Key is in progress")
    return StoredOutcome(json.loads(record.response_body), record.status_code)


def record_outcome(session: Session, user_id: str, key: str, outcome: dict[str, Any]) -> None:
    """Store the outcome of a claimed key (in the caller's transaction)."""
    record = session.get_one(IdempotencyRecord, (user_id, key))
    record.response_body = json.dumps(outcome)
    session.add(record)


def release(session: Session, user_id: str, key: str) -> None:
    """Drop an unanswered claim so the request can be retried (in the caller's transaction)."""
    session.exec(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.user_id) == user_id,
            col(IdempotencyRecord.key) == key,
            col(IdempotencyRecord.response_body).is_(None),
        )
    )


def forget(session: Session, user_id: str, key: str) -> None:
    """Drop a key's record whatever it holds, so the next request with it runs anew (in the caller's transaction):
    for a request whose charge was refunded because its batch could not start, which is void."""
    session.exec(
        delete(IdempotencyRecord).where(col(IdempotencyRecord.user_id) == user_id, col(IdempotencyRecord.key) == key)
    )
