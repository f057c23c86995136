"""A sliding-window-log rate limit per user (or per any subject), kept in the database so every API replica shares it.

At most `limit` requests are admitted in any `window_seconds` span, whatever its alignment: each admitted
request is logged with its time and counts until exactly `window_seconds` later. Refused requests are not
logged, so a client that keeps retrying gets in as soon as a slot frees up.
"""

import math
import time

from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from core.errors import RateLimited, RateLimitState
from db.models import RateLimitHit, ThrottleHit

_US = 1_000_000


# The window's log: per user (the enhance limit) or per subject that need not be a user (sign-in and reset
# attempts, keyed by an email's hash or a client address). One algorithm for both.
_Log = type[RateLimitHit] | type[ThrottleHit]


def _lock(session: Session, owner: str, bucket: str) -> None:
    """Serialise hits of one owner and bucket across replicas until the caller's transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        key = f"rate_limit:{owner}:{bucket}"
        session.connection().execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})
    # SQLite: the prune below is the transaction's first write, so it takes the database's write lock.


def _slide(
    session: Session, log: _Log, owner: str, bucket: str, limit: int, window_seconds: int, now: float | None, what: str
) -> RateLimitState:
    now_us = round((time.time() if now is None else now) * _US)
    window_us = window_seconds * _US
    _lock(session, owner, bucket)
    owner_column = col(log.user_id) if log is RateLimitHit else col(ThrottleHit.subject)
    key = (owner_column == owner, col(log.bucket) == bucket)
    session.exec(delete(log).where(*key, col(log.at_us) <= now_us - window_us))
    counted = session.exec(select(func.count(), func.min(log.at_us)).where(*key)).one()
    count, oldest = int(counted[0]), counted[1]
    frees_at_us = (oldest if oldest is not None else now_us) + window_us
    reset = math.ceil(frees_at_us / _US)
    if count >= limit:
        retry_after = max(1, math.ceil((frees_at_us - now_us) / _US))
        window = RateLimitState(limit=limit, remaining=0, reset_epoch=reset)
        raise RateLimited(f"Too many {what}; try again later", window, retry_after)
    if log is RateLimitHit:
        session.add(RateLimitHit(user_id=owner, bucket=bucket, at_us=now_us))
    else:
        session.add(ThrottleHit(subject=owner, bucket=bucket, at_us=now_us))
    session.flush()
    return RateLimitState(limit=limit, remaining=limit - count - 1, reset_epoch=reset)


def hit(
    session: Session, user_id: str, bucket: str, limit: int, window_seconds: int, now: float | None = None
) -> RateLimitState:
    """Count one request (in the caller's transaction); raise RateLimited if `limit` were exceeded.

    `now` (epoch seconds) is the clock, injectable for tests; the caller commits.
    """
    return _slide(session, RateLimitHit, user_id, bucket, limit, window_seconds, now, "enhance requests")


def throttle(
    session: Session, subject: str, bucket: str, limit: int, window_seconds: int, now: float | None = None
) -> RateLimitState:
    """As `hit`, for a subject that need not be a user (at most 100 characters: hash long ones)."""
    return _slide(session, ThrottleHit, subject, bucket, limit, window_seconds, now, "attempts")
