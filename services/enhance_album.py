"""The enhance use case: claim the idempotency key, count the request against the rate limit, charge, start the
batch (or refund it), mark it started. Each step is one transaction, begun and committed here (`with
transaction(session)`) and nowhere below, so a crash between two steps leaves a state the reconciler understands
(a CHARGED batch is started or refunded later).

It answers in the domain's terms: an EnhanceOutcome, or a DomainError; api/ alone turns either into a status, a
body and headers. The database steps are blocking and run on a worker thread; the start is awaited on the event
loop, where the Temporal client lives, so no thread is held (and no thread hops back to the loop) while the
server answers."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.config import Settings
from core.contracts import BatchEnhanceInput
from core.errors import BatchStartFailed, Conflict, RateLimitState
from core.vocabulary import BatchStatus, OutputFormat
from db.models import Batch
from db.session import transaction
from services import idempotency, rate_limit, webhooks
from services.batches import close_unstarted, input_for, mark_started
from services.enhance import BatchRequest, PlannedBatch, plan_and_charge

log = logging.getLogger(__name__)

START_FAILED = "Failed to start enhancement workflow. Tokens have been refunded."


@dataclass(frozen=True)
class EnhanceAlbum(BatchRequest):
    """One enhance request, after authentication, ownership and body validation."""

    idempotency_key: str | None = None
    callback_url: str | None = None  # the batch's final event goes there too (services.webhooks.add_callback)


@dataclass(frozen=True)
class QueuedImage:
    image_id: str
    job_id: str  # its enhancement job


@dataclass(frozen=True)
class EnhanceResult:
    """What an enhance did: the images it counted, skipped and queued (in order), what it charged, and the balance
    after; `batch_id` is None when nothing needed enhancing."""

    total_images: int
    skipped: int
    total_cost: int
    new_balance: int
    batch_id: str | None
    queued: tuple[QueuedImage, ...]

    @classmethod
    def of(cls, planned: PlannedBatch) -> "EnhanceResult":
        queued = tuple(
            QueuedImage(image.id, job.id) for image, job in zip(planned.to_enhance, planned.jobs, strict=True)
        )
        batch_id = planned.batch.id if planned.batch is not None else None
        return cls(planned.total_images, planned.skipped, planned.total_cost, planned.new_balance, batch_id, queued)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> "EnhanceResult":
        queued = tuple(QueuedImage(**image) for image in data.pop("queued"))
        return cls(**data, queued=queued)


@dataclass(frozen=True)
class EnhanceOutcome:
    """The result, this request's rate-limit window (None when it was not counted: the limit is off, or this is a
    replay), and whether it is the stored outcome of an earlier request with the same Idempotency-Key."""

    result: EnhanceResult
    rate_limit: RateLimitState | None = None
    replayed: bool = False


StartBatch = Callable[[BatchEnhanceInput], Awaitable[None]]

# How an outcome is kept for its Idempotency-Key (services/idempotency stores it as JSON).
_CHARGED, _START_FAILED = "charged", "start_failed"


@dataclass(frozen=True)
class _Charged:
    """The outcome, and the batch to start first (None: nothing was charged, or this is a replay)."""

    outcome: EnhanceOutcome
    to_start: BatchEnhanceInput | None = None


async def enhance_album(
    session: Session, settings: Settings, start: StartBatch, command: EnhanceAlbum
) -> EnhanceOutcome:
    """Run the use case; domain errors propagate with nothing charged or kept, and a batch that could not be
    started is refunded before BatchStartFailed is raised."""
    charged = await anyio.to_thread.run_sync(_claim_and_charge, session, settings, command)
    if charged.to_start is not None:
        try:
            await start(charged.to_start)
        except Exception:
            log.exception("could not start batch %s; refunding it", charged.to_start.batch_id)
            await anyio.to_thread.run_sync(
                _refund_unstarted, session, charged.to_start, command.idempotency_key, webhooks.links_base(settings)
            )
            return charged.outcome  # started by the reconciler meanwhile: the charge stands
        await anyio.to_thread.run_sync(_mark_started, session, charged.to_start.batch_id)
    return charged.outcome


def _claim_and_charge(session: Session, settings: Settings, command: EnhanceAlbum) -> _Charged:
    """Claim the Idempotency-Key (or replay its outcome), count the request, charge: each step committed."""
    key = command.idempotency_key
    if command.callback_url is not None:  # refused before anything is claimed or charged
        with transaction(session):
            webhooks.check_callback(session, command.user_id, command.callback_url, webhooks.destinations(settings))
    if key is not None:
        stored = _claim_key(session, settings, command, key)
        if stored is not None and _start_failed(stored):
            # Kept by an earlier version: that request was refunded, so it is void and this one runs anew.
            with transaction(session):
                idempotency.forget(session, command.user_id, key)
            stored = _claim_key(session, settings, command, key)
        if stored is not None:
            return _Charged(_replay(stored))
    try:
        window = _count_request(session, settings, command.user_id)
        with transaction(session):
            planned = plan_and_charge(session, command, settings.max_batch_size, settings.execution_mode)
            if command.callback_url is not None and planned.batch is not None:
                rules = webhooks.destinations(settings)
                webhooks.add_callback(session, command.user_id, planned.batch.id, command.callback_url, rules)
            result = EnhanceResult.of(planned)
            if key is not None:
                idempotency.record_outcome(session, command.user_id, key, {"outcome": _CHARGED, **asdict(result)})
    except BaseException:
        if key is not None:
            with transaction(session):
                idempotency.release(session, command.user_id, key)
        raise
    to_start = (
        input_for(planned.batch, planned.jobs, planned.to_enhance, settings) if planned.batch is not None else None
    )
    return _Charged(EnhanceOutcome(result, window), to_start)


def _claim_key(
    session: Session, settings: Settings, command: EnhanceAlbum, key: str
) -> idempotency.StoredOutcome | None:
    """Claim the key in a transaction of its own (None), or find the outcome stored for it."""
    fingerprint = idempotency.request_fingerprint(_request_of(command))
    for _ in range(3):
        try:
            with transaction(session):
                return idempotency.claim(session, command.user_id, key, fingerprint, settings.idempotency_ttl_seconds)
        except IntegrityError:
            continue  # claimed by another request at the same moment: look again
    raise Conflict("A request with this Idempotency-Key is in progress")


def _request_of(command: EnhanceAlbum) -> dict[str, Any]:
    """What identifies the request for its Idempotency-Key: everything but who sent it and the key itself. The output
    choices and the callbackUrl only when they differ from the defaults, so a key's fingerprint is what it was
    before they existed."""
    request = {name: value for name, value in asdict(command).items() if name not in ("user_id", "idempotency_key")}
    for name, default in _OPTIONAL_DEFAULTS.items():
        if request[name] == default:
            del request[name]
    return request


_OPTIONAL_DEFAULTS: dict[str, object] = {
    "output_format": OutputFormat.JPEG,
    "keep_location": False,
    "callback_url": None,
}


def _outcome_data(stored: idempotency.StoredOutcome) -> dict[str, Any]:
    return _from_answer(stored.legacy_status, stored.data) if stored.legacy_status is not None else dict(stored.data)


def _start_failed(stored: idempotency.StoredOutcome) -> bool:
    return bool(_outcome_data(stored)["outcome"] == _START_FAILED)


def _replay(stored: idempotency.StoredOutcome) -> EnhanceOutcome:
    """The outcome of the key's first request, again."""
    data = _outcome_data(stored)
    data.pop("outcome")
    return EnhanceOutcome(EnhanceResult.from_record(data), replayed=True)


def _from_answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """An outcome stored as its HTTP answer (records written before outcomes were stored, kept for a day)."""
    if status != 200:
        return {"outcome": _START_FAILED}
    queued = [{"image_id": job["imageId"], "job_id": job["enhancementJobId"]} for job in body["jobs"]]
    names = {
        "total_images": "totalImages",
        "skipped": "skipped",
        "total_cost": "totalCost",
        "new_balance": "newBalance",
    }
    return {
        "outcome": _CHARGED,
        **{ours: body[theirs] for ours, theirs in names.items()},
        "batch_id": body.get("batchId"),
        "queued": queued,
    }


def _count_request(session: Session, settings: Settings, user_id: str) -> RateLimitState | None:
    """Count the request against the user's limit, in its own transaction (a refused request is not counted)."""
    if not settings.rate_limit_enabled:
        return None
    with transaction(session):
        return rate_limit.hit(
            session, user_id, "enhance", settings.rate_limit_requests, settings.rate_limit_window_seconds
        )


def _refund_unstarted(session: Session, inp: BatchEnhanceInput, key: str | None, links_base: str) -> None:
    """The batch could not be started: refund it, then raise BatchStartFailed (said only once refunded). The
    refund makes the request void, so its Idempotency-Key is forgotten in the same transaction: a client that
    retries with the key gets a request that runs again, not the failure replayed for a day."""
    with transaction(session):
        reason = "The workflow could not be started"
        refunded = close_unstarted(session, inp.batch_id, BatchStatus.FAILED, reason, links_base)
        # Started meanwhile by the reconciler (same workflow id): the batch runs, so the charge stands.
        started = session.get_one(Batch, inp.batch_id).status != BatchStatus.FAILED
        if not started and key is not None:
            idempotency.forget(session, inp.user_id, key)
    if started:
        log.info("batch %s was started by the reconciler; %s tokens were not refunded", inp.batch_id, refunded)
        return
    raise BatchStartFailed(START_FAILED)


def _mark_started(session: Session, batch_id: str) -> None:
    with transaction(session):
        mark_started(session, batch_id)
