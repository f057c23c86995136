"""Idempotency-Key handling: the first response of a key is stored in the database and replayed."""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from core.errors import Conflict, IdempotencyKeyReused, InvalidRequest
from db.models import IdempotencyRecord, utcnow

MAX_KEY_LENGTH = 255
# A claim with no response after this long belongs to a request that died before committing.
STALE_CLAIM = timedelta(seconds=120)


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


def request_fingerprint(*parts: object) -> str:
    """A stable hash of what identifies a request (path ids and the normalised body)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> str:
    """Refuse empty or oversized keys."""
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    return key


def claim(session: Session, user_id: str, key: str, fingerprint: str, ttl_seconds: int) -> StoredResponse | None:
    """Claim the key for this request (commits), or return the stored response to replay."""
    for _ in range(3):
        record = session.get(IdempotencyRecord, (user_id, key))
        now = utcnow()
        if record is not None:
            expired = record.created_at < now - timedelta(seconds=ttl_seconds)
            abandoned = record.status_code is None and record.created_at < now - STALE_CLAIM
            if not (expired or abandoned):
                return _existing(record, fingerprint)
            session.delete(record)
            session.flush()
        session.add(IdempotencyRecord(user_id=user_id, key=key, request_hash=fingerprint))
        try:
            session.commit()
            return None
        except IntegrityError:
            session.rollback()
    raise Conflict("A request with this Idempotency-Key is in progress")


def _existing(record: IdempotencyRecord, fingerprint: str) -> StoredResponse:
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused("Idempotency-Key was already used with a different request")
    if record.status_code is None or record.response_body is None:
        raise Conflict("A request with this Idempotency-Key is in progress")
    return StoredResponse(record.status_code, json.loads(record.response_body))


def record_response(session: Session, user_id: str, key: str, status_code: int, body: dict[str, Any]) -> None:
    """Store the response of a claimed key (in the caller's transaction)."""
    record = session.get_one(IdempotencyRecord, (user_id, key))
    record.status_code = status_code
    record.response_body = json.dumps(body)
    session.add(record)


def release(session: Session, user_id: str, key: str) -> None:
    """Drop an unanswered claim so the request can be retried (in the caller's transaction)."""
    session.exec(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.user_id) == user_id,
            col(IdempotencyRecord.key) == key,
            col(IdempotencyRecord.status_code).is_(None),
        )
    )
