"""The token ledger: conditional debits, refunds exactly once, balance = sum of the ledger, under concurrency."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from core.errors import InsufficientTokens
from db import ledger
from db.models import EnhancementJob, JobStatus, LedgerType, Tier, User
from db.session import session_scope
from storage.local import LocalStorage
from tests.conftest import engine_for
from tests.db_helpers import assert_balance_matches_ledger, balance, ledger_entries
from tests.factories import make_album, make_image, make_pending_job, make_user


def test_consume_debits_and_records(db_url: str) -> None:
    engine = engine_for(db_url)
    user = make_user(engine, tokens=10)
    with session_scope(engine) as session:
        assert ledger.consume(session, user.id, 4, "batch-1", 2) == 6
    assert balance(engine, user.id) == 6
    assert [(e.amount, e.type, e.balance_after) for e in ledger_entries(engine, user.id)] == [
        (10, LedgerType.GRANT, 10),
        (-4, LedgerType.CONSUME, 6),
    ]


def test_consume_over_balance_changes_nothing(db_url: str) -> None:
    engine = engine_for(db_url)
    user = make_user(engine, tokens=3)
    with pytest.raises(InsufficientTokens) as raised, session_scope(engine) as session:
        ledger.consume(session, user.id, 4, "batch-1", 2)
    assert raised.value.extra == {"required": 4, "toEnhance": 2, "balance": 3}
    assert balance(engine, user.id) == 3
    assert len(ledger_entries(engine, user.id)) == 1


def test_refund_happens_once(db_url: str, tmp_path) -> None:
    engine = engine_for(db_url)
    user = make_user(engine, tokens=10)
    album = make_album(engine, user)
    image = make_image(engine, LocalStorage(tmp_path), album)
    job_id = make_pending_job(engine, user, album, image, Tier.TIER_1K, cost=2)
    with session_scope(engine) as session:
        ledger.consume(session, user.id, 2, "b", 1)
    for _ in range(3):
        with session_scope(engine) as session:
            ledger.refund_job(session, job_id, JobStatus.FAILED, "broken")
    assert balance(engine, user.id) == 10
    assert [e.amount for e in ledger_entries(engine, user.id, LedgerType.REFUND)] == [2]
    with Session(engine) as session:
        job = session.get_one(EnhancementJob, job_id)
        assert (job.status, job.tokens_refunded, job.error_message) == (JobStatus.FAILED, 2, "broken")
    assert_balance_matches_ledger(engine, user.id)


def test_balance_can_never_go_negative(db_url: str) -> None:
    engine = engine_for(db_url)
    user = make_user(engine, tokens=100)

    def spend(i: int) -> bool:
        try:
            with session_scope(engine) as session:
                ledger.consume(session, user.id, 7, f"batch-{i}", 1)
            return True
        except InsufficientTokens:
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        successes = sum(pool.map(spend, range(40)))
    assert successes == 100 // 7
    assert balance(engine, user.id) == 100 - 7 * successes
    assert_balance_matches_ledger(engine, user.id)


def test_database_refuses_a_negative_balance(db_url: str) -> None:
    engine = engine_for(db_url)
    user = make_user(engine, tokens=1)
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.exec(update(User).where(col(User.id) == user.id).values(token_balance=-1))
