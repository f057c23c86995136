"""The sliding-window rate limit at its edges, with an injected clock (no sleeps), on both databases."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from api.errors import error_headers
from core.errors import RateLimited
from db.models import RateLimitHit
from db.session import session_scope
from services import rate_limit
from tests.conftest import engine_for
from tests.factories import make_user

WINDOW = 60
T0 = 1_800_000_000.0  # an arbitrary epoch second; a multiple of 60, so T0 + 60 is a minute boundary


def attempt(engine: Engine, user_id: str, now: float, limit: int = 3) -> int | None:
    """One request at `now`: None if admitted, else the Retry-After it was refused with."""
    try:
        with session_scope(engine) as session:
            rate_limit.hit(session, user_id, "enhance", limit, WINDOW, now=now)
        return None
    except RateLimited as refused:
        return int(error_headers(refused)["Retry-After"])


def test_at_most_limit_in_any_window_across_a_minute_boundary(db_url: str) -> None:
    """The fixed window let 2N through around a boundary; a sliding log counts the last 60 s wherever they fall."""
    engine = engine_for(db_url)
    user = make_user(engine)
    edge = T0 + 60
    assert [attempt(engine, user.id, edge - 0.5 + i * 0.1) for i in range(3)] == [None, None, None]
    # Just after the boundary, where a fixed window would start counting from zero again.
    assert attempt(engine, user.id, edge + 0.5) == 59
    assert attempt(engine, user.id, edge + 59.0) == 1


def test_a_request_counts_for_exactly_one_window(db_url: str) -> None:
    engine = engine_for(db_url)
    user = make_user(engine)
    for offset in (0.0, 10.0, 20.0):
        assert attempt(engine, user.id, T0 + offset) is None
    assert attempt(engine, user.id, T0 + 59.999_999) == 1  # the first still counts one microsecond before
    assert attempt(engine, user.id, T0 + 60.0) is None  # and not at 60 s: spans are half-open
    assert attempt(engine, user.id, T0 + 69.0) == 1  # the slot of T0 + 10 frees at T0 + 70
    assert attempt(engine, user.id, T0 + 70.0) is None


def test_refused_requests_are_not_counted_and_the_log_stays_bounded(db_url: str) -> None:
    engine = engine_for(db_url)
    user = make_user(engine)
    for i in range(3):
        assert attempt(engine, user.id, T0 + i) is None
    assert all(attempt(engine, user.id, T0 + 3 + i * 0.5) is not None for i in range(20))
    assert attempt(engine, user.id, T0 + 60.0) is None  # hammering did not push the window back
    with Session(engine) as session:
        rows = session.exec(select(func.count()).where(col(RateLimitHit.user_id) == user.id)).one()
    assert rows == 3


def test_headers_describe_the_sliding_window(db_url: str) -> None:
    engine = engine_for(db_url)
    user = make_user(engine)
    states = []
    for offset in (0.0, 5.0):
        with session_scope(engine) as session:
            states.append(rate_limit.hit(session, user.id, "enhance", 2, WINDOW, now=T0 + offset))
    assert [(s.remaining, s.reset_epoch) for s in states] == [(1, int(T0) + 60), (0, int(T0) + 60)]
    with pytest.raises(RateLimited) as refused, session_scope(engine) as session:
        rate_limit.hit(session, user.id, "enhance", 2, WINDOW, now=T0 + 30.5)
    assert refused.value.extra == {"retryAfter": 30}
    assert error_headers(refused.value) == {
        "Retry-After": "30",
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(T0) + 60),
    }


def test_concurrent_hits_never_exceed_the_limit(db_url: str) -> None:
    """Replicas race on the same user: the per-user lock admits exactly `limit` of them."""
    engine = engine_for(db_url)
    user = make_user(engine)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda i: attempt(engine, user.id, T0 + i * 0.001, limit=5), range(24)))
    assert sum(outcome is None for outcome in outcomes) == 5
