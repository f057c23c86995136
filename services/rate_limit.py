"""A sliding-window-log rate limit per user, kept in the database so every API replica shares it.

At most `limit` requests are admitted in any `window_seconds` span, whatever its alignment: each admitted
request is logged with its time and counts until exactly `window_seconds` later. Refused requests are not
logged, so a client that keeps retrying gets in as soon as a slot frees up.
"""

import math
import time

from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from core.errors import RateLimited, RateLimitState
from db.models import RateLimitHit

_US = 1_000_000


def _lock(session: Session, user_id: str, bucket: str) -> None:
    """Serialise hits of one user and bucket across replicas until the caller's transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        key = f"rate_limit:{user_id}:{bucket}"
        session.connection().execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})
    # SQLite: the prune below is the transaction's first write, so it takes the database's write lock.


def hit(
    session: Session, user_id: str, bucket: str, limit: int, window_seconds: int, now: float | None = None
) -> RateLimitState:
    """Count one request (in the caller's transaction); raise RateLimited if `limit` were exceeded.

    `now` (epoch seconds) is the clock, injectable for tests; the caller commits.
    """
    now_us = round((time.time() if now is None else now) * _US)
    window_us = window_seconds * _US
    _lock(session, user_id, bucket)
    key = (col(RateLimitHit.user_id) == user_id, col(RateLimitHit.bucket) == bucket)
    session.exec(delete(RateLimitHit).where(*key, col(RateLimitHit.at_us) <= now_us - window_us))
    counted = session.exec(select(func.count(), func.min(RateLimitHit.at_us)).where(*key)).one()
    count, oldest = int(counted[0]), counted[1]
    frees_at_us = (oldest if oldest is not None else now_us) + window_us
    reset = math.ceil(frees_at_us / _US)
    if count >= limit:
        retry_after = max(1, math.ceil((frees_at_us - now_us) / _US))
        window = RateLimitState(limit=limit, remaining=0, reset_epoch=reset)
        raise RateLimited("Too many enhance requests; try again later", window, retry_after)
    session.add(RateLimitHit(user_id=user_id, bucket=bucket, at_us=now_us))
    session.flush()
    return RateLimitState(limit=limit, remaining=limit - count - 1, reset_epoch=reset)
