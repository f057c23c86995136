"""The enhance use case: claim the idempotency key, count the request against the rate limit, charge, start the
batch (or refund it), mark it started. Each step is its own transaction, committed here and nowhere else, so a
crash between two steps leaves a state the reconciler understands (a CHARGED batch is started or refunded later).

The database steps are blocking and run on a worker thread; the start is awaited on the event loop, where the
Temporal client lives, so no thread is held (and no thread hops back to the loop) while the server answers."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio.to_thread
from sqlmodel import Session

from core.config import Settings
from core.contracts import BatchEnhanceInput
from core.errors import BatchStartFailed
from core.vocabulary import BatchStatus, Tier
from db.models import Batch
from services import idempotency, rate_limit
from services.batches import close_unstarted, input_for, mark_started
from services.enhance import PlannedBatch, plan_and_charge

log = logging.getLogger(__name__)

START_FAILED = "Failed to start enhancement workflow. Tokens have been refunded."


@dataclass(frozen=True)
class EnhanceAlbum:
    """One enhance request, after authentication, ownership and body validation."""

    user_id: str
    album_id: str
    tier: Tier
    skip_already_enhanced: bool
    image_ids: tuple[str, ...] | None = None  # only these images of the album (None: all of them)
    idempotency_key: str | None = None


@dataclass(frozen=True)
class EnhanceAnswer:
    """What the API answers: the contract's 200 body, or a stored answer replayed for an Idempotency-Key."""

    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


StartBatch = Callable[[BatchEnhanceInput], Awaitable[None]]
RenderResponse = Callable[[PlannedBatch], dict[str, Any]]


@dataclass(frozen=True)
class _Charged:
    """The answer to give, and the batch to start first (None: nothing was charged)."""

    answer: EnhanceAnswer
    to_start: BatchEnhanceInput | None = None


async def enhance_album(
    session: Session, settings: Settings, start: StartBatch, render: RenderResponse, command: EnhanceAlbum
) -> EnhanceAnswer:
    """Run the use case; domain errors (400, 402, 404, 409, 422, 429, 500) propagate with nothing charged or kept."""
    charged = await anyio.to_thread.run_sync(_claim_and_charge, session, settings, render, command)
    if charged.to_start is not None:
        try:
            await start(charged.to_start)
        except Exception:
            log.exception("could not start batch %s; refunding it", charged.to_start.batch_id)
            await anyio.to_thread.run_sync(_refund_unstarted, session, charged.to_start, command.idempotency_key)
            return charged.answer  # started by the reconciler meanwhile: the charge stands
        await anyio.to_thread.run_sync(_mark_started, session, charged.to_start.batch_id)
    return charged.answer


def _claim_and_charge(session: Session, settings: Settings, render: RenderResponse, command: EnhanceAlbum) -> _Charged:
    """Claim the Idempotency-Key (or replay its answer), count the request, charge: each step committed."""
    key = command.idempotency_key
    if key is not None:
        fingerprint = idempotency.request_fingerprint(_request_of(command))
        stored = idempotency.claim(session, command.user_id, key, fingerprint, settings.idempotency_ttl_seconds)
        if stored is not None:
            return _Charged(EnhanceAnswer(stored.status_code, stored.body, replayed=True))
    try:
        headers = _count_request(session, settings, command.user_id)
        planned = _charge(session, settings, command)
        body = render(planned)
        if key is not None:
            idempotency.record_response(session, command.user_id, key, 200, body)
        session.commit()
    except BaseException:
        session.rollback()
        if key is not None:
            idempotency.release(session, command.user_id, key)
            session.commit()
        raise
    to_start = (
        input_for(planned.batch, planned.jobs, planned.to_enhance, settings) if planned.batch is not None else None
    )
    return _Charged(EnhanceAnswer(200, body, headers), to_start)


def _request_of(command: EnhanceAlbum) -> dict[str, Any]:
    """What identifies the request for its Idempotency-Key: everything but who sent it and the key itself."""
    return {name: value for name, value in asdict(command).items() if name not in ("user_id", "idempotency_key")}


def _count_request(session: Session, settings: Settings, user_id: str) -> dict[str, str]:
    """Count the request against the user's limit, in its own transaction (a refused request is not counted)."""
    if not settings.rate_limit_enabled:
        return {}
    limits = rate_limit.hit(
        session, user_id, "enhance", settings.rate_limit_requests, settings.rate_limit_window_seconds
    )
    session.commit()
    return limits.headers()


def _charge(session: Session, settings: Settings, command: EnhanceAlbum) -> PlannedBatch:
    return plan_and_charge(
        session,
        user_id=command.user_id,
        album_id=command.album_id,
        tier=command.tier,
        skip_already_enhanced=command.skip_already_enhanced,
        max_batch_size=settings.max_batch_size,
        execution_mode=settings.execution_mode,
        image_ids=command.image_ids,
    )


def _refund_unstarted(session: Session, inp: BatchEnhanceInput, key: str | None) -> None:
    """The batch could not be started: refund it, then answer the contract's 500 (said only once refunded)."""
    refunded = close_unstarted(session, inp.batch_id, BatchStatus.FAILED, "The workflow could not be started")
    status = session.get_one(Batch, inp.batch_id).status
    if status != BatchStatus.FAILED:
        # Started meanwhile by the reconciler (same workflow id): the batch runs, so the charge stands.
        session.commit()
        log.info("batch %s was started by the reconciler; %s tokens were not refunded", inp.batch_id, refunded)
        return
    if key is not None:
        idempotency.record_response(session, inp.user_id, key, 500, {"error": START_FAILED})
    session.commit()
    raise BatchStartFailed(START_FAILED)


def _mark_started(session: Session, batch_id: str) -> None:
    mark_started(session, batch_id)
    session.commit()
