"""Read-only checks on the database used by many tests."""

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from db import ledger
from db.models import Batch, DeliveryStatus, EnhancementJob, Image, LedgerType, TokenTransaction, User, WebhookDelivery
from db.session import session_scope


def balance(engine: Engine, user_id: str) -> int:
    with Session(engine) as session:
        return session.get_one(User, user_id).token_balance


def assert_balance_matches_ledger(engine: Engine, user_id: str) -> None:
    with Session(engine) as session:
        assert session.get_one(User, user_id).token_balance == ledger.ledger_sum(session, user_id)


def jobs_of_batch(engine: Engine, batch_id: str) -> list[EnhancementJob]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(EnhancementJob)
                .where(col(EnhancementJob.batch_id) == batch_id)
                .order_by(col(EnhancementJob.position))
            )
        )


def batch_row(engine: Engine, batch_id: str) -> Batch:
    with Session(engine) as session:
        return session.get_one(Batch, batch_id)


def ledger_entries(engine: Engine, user_id: str, kind: LedgerType | None = None) -> list[TokenTransaction]:
    with Session(engine) as session:
        query = select(TokenTransaction).where(col(TokenTransaction.user_id) == user_id)
        if kind is not None:
            query = query.where(col(TokenTransaction.type) == kind)
        return list(session.exec(query.order_by(col(TokenTransaction.id))))


def refunds_for_job(engine: Engine, job_id: str) -> int:
    with Session(engine) as session:
        rows = session.exec(
            select(TokenTransaction).where(
                col(TokenTransaction.type) == LedgerType.REFUND, col(TokenTransaction.reference) == f"job:{job_id}"
            )
        ).all()
        return len(rows)


def original_key_of(engine: Engine, image_id: str) -> str:
    with Session(engine) as session:
        return session.get_one(Image, image_id).original_key


def end_pending_deliveries(engine: Engine) -> None:
    """End every webhook delivery still PENDING. A test whose receiver is gone leaves them so, and every direct-mode
    API started later on the same database would resume them (its reconciler starts stranded deliveries)."""
    with session_scope(engine) as session:
        session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.status) == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.FAILED, error="The test that made it ended")
        )
