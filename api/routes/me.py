"""The caller's account and token ledger."""

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, select

from api.deps import CurrentUser, SessionDep
from api.schemas import ErrorOut, LedgerContextOut, MeOut, TransactionOut, TransactionsOut
from db.models import TokenTransaction
from services.ledger_context import ledger_contexts

router = APIRouter(tags=["account"])


@router.get("/me", response_model=MeOut, responses={401: {"model": ErrorOut}})
def read_me(user: CurrentUser) -> MeOut:
    """The caller's id, email and token balance."""
    return MeOut.model_validate(user)


@router.get(
    "/tokens/transactions",
    response_model=TransactionsOut,
    responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}},
)
def read_transactions(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> TransactionsOut:
    """The caller's ledger, newest first, each charge and refund with its batch, album and photo."""
    rows = session.exec(
        select(TokenTransaction)
        .where(col(TokenTransaction.user_id) == user.id)
        .order_by(col(TokenTransaction.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    contexts = ledger_contexts(session, user.id, list(rows))

    def out(row: TokenTransaction) -> TransactionOut:
        context = contexts.get(row.id) if row.id is not None else None
        return TransactionOut.model_validate(row).model_copy(
            update={"context": LedgerContextOut.model_validate(context) if context else None}
        )

    return TransactionsOut(transactions=[out(row) for row in rows])
