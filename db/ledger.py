"""The token ledger: every balance change is a conditional UPDATE plus one ledger row, in the caller's transaction."""

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from core.errors import InsufficientTokens, NotFound
from db.models import IN_FLIGHT_STATUSES, EnhancementJob, JobStatus, LedgerType, TokenTransaction, User, utcnow


def _add_entry(session: Session, user_id: str, amount: int, kind: LedgerType, reference: str, balance: int) -> None:
    session.add(TokenTransaction(user_id=user_id, amount=amount, type=kind, reference=reference, balance_after=balance))
    session.flush()


def grant(session: Session, user_id: str, amount: int, reference: str) -> int:
    """Credit tokens to a user and return the new balance."""
    if amount <= 0:
        raise ValueError("a grant must be positive")
    balance = session.exec(
        update(User)
        .where(col(User.id) == user_id)
        .values(token_balance=User.token_balance + amount)
        .returning(col(User.token_balance))
    ).scalar_one_or_none()
    if balance is None:
        raise NotFound("User not found")
    _add_entry(session, user_id, amount, LedgerType.GRANT, reference, balance)
    return int(balance)


def balance(session: Session, user_id: str) -> int:
    """A user's balance as this transaction sees it."""
    return int(session.exec(select(User.token_balance).where(col(User.id) == user_id)).one())


def insufficient_tokens(required: int, to_enhance: int, balance: int | None) -> InsufficientTokens:
    """The refusal of a charge the balance does not cover, with the facts the contract's 402 gives."""
    return InsufficientTokens("Insufficient tokens", required=required, toEnhance=to_enhance, balance=balance)


def consume(session: Session, user_id: str, amount: int, reference: str, to_enhance: int) -> int:
    """Debit tokens only if the balance covers them (one conditional UPDATE) and return the new balance."""
    balance = session.exec(
        update(User)
        .where(col(User.id) == user_id, col(User.token_balance) >= amount)
        .values(token_balance=User.token_balance - amount)
        .returning(col(User.token_balance))
    ).scalar_one_or_none()
    if balance is None:
        current = session.exec(select(User.token_balance).where(col(User.id) == user_id)).one_or_none()
        raise insufficient_tokens(amount, to_enhance, current)
    _add_entry(session, user_id, -amount, LedgerType.CONSUME, reference, balance)
    return int(balance)


def refund_job(
    session: Session,
    job_id: str,
    final_status: JobStatus,
    reason: str | None,
    from_statuses: tuple[JobStatus, ...] = IN_FLIGHT_STATUSES,
) -> int:
    """Close an unfinished job as FAILED or CANCELLED and return its cost to the user, once; returns tokens refunded."""
    if final_status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise ValueError("a refunded job ends FAILED or CANCELLED")
    closed = session.exec(
        update(EnhancementJob)
        .where(
            col(EnhancementJob.id) == job_id,
            col(EnhancementJob.status).in_(from_statuses),
            col(EnhancementJob.tokens_refunded) == 0,
        )
        .values(
            status=final_status,
            tokens_refunded=EnhancementJob.tokens_cost,
            error_message=reason,
            finished_at=utcnow(),
        )
        .returning(col(EnhancementJob.user_id), col(EnhancementJob.tokens_cost))
    ).one_or_none()
    if closed is None:
        return 0
    user_id, cost = closed
    balance = session.exec(
        update(User)
        .where(col(User.id) == user_id)
        .values(token_balance=User.token_balance + cost)
        .returning(col(User.token_balance))
    ).scalar_one()
    _add_entry(session, user_id, cost, LedgerType.REFUND, f"job:{job_id}", balance)
    return int(cost)


def ledger_sum(session: Session, user_id: str) -> int:
    """Return the sum of all ledger amounts of a user (always equal to the balance)."""
    total = session.exec(
        select(func.coalesce(func.sum(TokenTransaction.amount), 0)).where(col(TokenTransaction.user_id) == user_id)
    ).one()
    return int(total)
