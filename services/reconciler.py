"""Finds batches that were charged but never started, and starts them (or, after long enough, refunds them);
and now and then removes stored objects no row refers to."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.config import Settings
from core.contracts import BatchEnhanceInput
from core.vocabulary import ACTIVE_BATCH_STATUSES
from db.models import Batch, BatchStatus, utcnow
from db.session import session_scope
from services.batches import batch_input, close_abandoned, close_unstarted, mark_started
from services.launcher import BatchLauncher
from services.storage_sweep import sweep
from services.webhooks import WebhookLauncher, links_base, stranded_deliveries
from storage.base import Storage

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    started: list[str] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # rows closed after their workflow had ended
    deliveries: list[str] = field(default_factory=list)  # webhook deliveries started (again)


# The final status of a batch whose workflow has ended, None while it runs (TemporalLauncher.ended_status).
EndedStatus = Callable[[str], Awaitable[BatchStatus | None]]
ENDED_UNRECORDED = "The enhancement workflow ended without recording this image; its tokens were refunded"


def _open_temporal_batches(engine: Engine, settings: Settings) -> list[str]:
    cutoff = utcnow() - timedelta(seconds=settings.reconcile_grace_seconds)
    with Session(engine) as session:
        return list(
            session.exec(
                select(Batch.id).where(
                    col(Batch.status).in_(ACTIVE_BATCH_STATUSES),
                    col(Batch.execution_mode) == "temporal",
                    col(Batch.created_at) < cutoff,
                )
            )
        )


def _close_abandoned(engine: Engine, batch_id: str, final: BatchStatus, base_url: str) -> int:
    with session_scope(engine) as session:
        return close_abandoned(session, batch_id, final, ENDED_UNRECORDED, base_url)


async def repair_ended(engine: Engine, settings: Settings, ended_status: EndedStatus) -> list[str]:
    """Close every RUNNING or PAUSED row whose workflow has ended (or does not exist): its final status from the
    workflow's result, and a refund for each job it left in flight. A row whose workflow still runs is left."""
    repaired = []
    for batch_id in await asyncio.to_thread(_open_temporal_batches, engine, settings):
        try:
            final = await ended_status(batch_id)
        except Exception:
            log.warning("reconciler could not read the workflow of batch %s", batch_id, exc_info=True)
            continue
        if final is None:
            continue
        refunded = await asyncio.to_thread(_close_abandoned, engine, batch_id, final, links_base(settings))
        log.warning("batch %s: its workflow had ended; closed as %s, %d tokens refunded", batch_id, final, refunded)
        repaired.append(batch_id)
    return repaired


def _stranded_batches(engine: Engine, settings: Settings, resume_running_direct: bool) -> list[BatchEnhanceInput]:
    cutoff = utcnow() - timedelta(seconds=settings.reconcile_grace_seconds)
    with Session(engine) as session:
        stranded = select(Batch).where(col(Batch.status) == BatchStatus.CHARGED, col(Batch.created_at) < cutoff)
        batches = list(session.exec(stranded))
        if resume_running_direct:
            # Direct batches live in their API process: after a restart nothing else runs them.
            running = select(Batch).where(
                col(Batch.status).in_(ACTIVE_BATCH_STATUSES), col(Batch.execution_mode) == "direct"
            )
            batches += list(session.exec(running))
        return [batch_input(session, batch, settings) for batch in batches]


def _refund_if_too_old(engine: Engine, settings: Settings, batch_id: str) -> bool:
    limit = utcnow() - timedelta(seconds=settings.reconcile_refund_after_seconds)
    with session_scope(engine) as session:
        batch = session.get_one(Batch, batch_id)
        if batch.created_at >= limit:
            return False
        close_unstarted(
            session,
            batch_id,
            BatchStatus.FAILED,
            "The enhancement workflow could not be started",
            links_base(settings),
        )
        return True


def _mark_started(engine: Engine, batch_id: str) -> None:
    with session_scope(engine) as session:
        mark_started(session, batch_id)


async def reconcile_once(
    engine: Engine,
    launcher: BatchLauncher,
    settings: Settings,
    resume_running_direct: bool = False,
    ended_status: EndedStatus | None = None,
    webhooks: WebhookLauncher | None = None,
) -> ReconcileReport:
    """One pass: start every stranded batch (idempotent: the workflow id is the batch id), and every webhook
    delivery recorded but not known to be started (idempotent too: its workflow id is the delivery's); with
    `ended_status` (Temporal), close the rows whose workflow has ended."""
    report = ReconcileReport()
    if ended_status is not None:
        report.repaired = await repair_ended(engine, settings, ended_status)
    if webhooks is not None:
        await _start_stranded_deliveries(engine, settings, webhooks, report)
    for inp in await asyncio.to_thread(_stranded_batches, engine, settings, resume_running_direct):
        try:
            await launcher.start(inp)
        except Exception:
            log.warning("reconciler could not start batch %s", inp.batch_id, exc_info=True)
            if await asyncio.to_thread(_refund_if_too_old, engine, settings, inp.batch_id):
                report.refunded.append(inp.batch_id)
            else:
                report.failed.append(inp.batch_id)
            continue
        await asyncio.to_thread(_mark_started, engine, inp.batch_id)
        report.started.append(inp.batch_id)
    if report.started or report.refunded:
        log.info("reconciler started %s and refunded %s", report.started, report.refunded)
    return report


async def _start_stranded_deliveries(
    engine: Engine, settings: Settings, webhooks: WebhookLauncher, report: ReconcileReport
) -> None:
    grace = timedelta(seconds=settings.reconcile_grace_seconds)
    stranded = await asyncio.to_thread(stranded_deliveries, engine, grace)
    try:
        await webhooks.start(stranded)
    except Exception:
        log.warning("reconciler could not start webhook deliveries", exc_info=True)
        return
    report.deliveries.extend(stranded)


async def reconcile_forever(
    engine: Engine,
    launcher: BatchLauncher,
    settings: Settings,
    storage: Storage,
    direct: bool = False,
    ended_status: EndedStatus | None = None,
    webhooks: WebhookLauncher | None = None,
) -> None:
    """Reconcile at start (resuming direct batches once) and then every interval; sweep the storage at start and
    then every STORAGE_SWEEP_INTERVAL_SECONDS."""
    resume = direct
    next_sweep = 0.0
    while True:
        try:
            await reconcile_once(
                engine, launcher, settings, resume_running_direct=resume, ended_status=ended_status, webhooks=webhooks
            )
            resume = False
        except Exception:
            log.exception("reconciler pass failed")
        if time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + settings.storage_sweep_interval_seconds
            try:
                await asyncio.to_thread(sweep, engine, storage, settings.storage_sweep_grace_seconds)
            except Exception:
                log.exception("storage sweep failed")
        await asyncio.sleep(settings.reconcile_interval_seconds)
