"""A fixed-window request counter per user, kept in the database so every API replica shares it."""

import time
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from core.errors import RateLimited
from db.models import RateLimitCounter


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_epoch: int

    def headers(self) -> dict[str, str]:
        """The X-RateLimit-* headers describing this window."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }


def _increment(session: Session, user_id: str, bucket: str, window_start: int) -> int:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(RateLimitCounter)
        .values(user_id=user_id, bucket=bucket, window_start=window_start, count=1)
        .on_conflict_do_update(
            index_elements=["user_id", "bucket", "window_start"],
            set_={"count": col(RateLimitCounter.count) + 1},
        )
        .returning(col(RateLimitCounter.count))
    )
    return int(session.exec(statement).scalar_one())


def hit(session: Session, user_id: str, bucket: str, limit: int, window_seconds: int) -> RateLimitState:
    """Count one request (in the caller's transaction); raise RateLimited once the window is full."""
    now = time.time()
    window_start = int(now // window_seconds) * window_seconds
    session.exec(
        delete(RateLimitCounter).where(
            col(RateLimitCounter.user_id) == user_id,
            col(RateLimitCounter.bucket) == bucket,
            col(RateLimitCounter.window_start) < window_start,
        )
    )
    count = _increment(session, user_id, bucket, window_start)
    reset = window_start + window_seconds
    state = RateLimitState(limit=limit, remaining=max(limit - count, 0), reset_epoch=reset)
    if count > limit:
        retry_after = max(1, int(reset - now + 0.999))
        raise RateLimited(
            "Too many enhance requests; try again later",
            retryAfter=retry_after,
            headers={"Retry-After": str(retry_after), **state.headers()},
        )
    return state
