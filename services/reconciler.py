"""Finds batches that were charged but never started, and starts them (or, after long enough, refunds them)."""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.config import Settings
from core.contracts import BatchEnhanceInput
from core.vocabulary import ACTIVE_BATCH_STATUSES
from db.models import Batch, BatchStatus, utcnow
from db.session import session_scope
from services.batches import batch_input, close_unstarted, mark_started
from services.launcher import BatchLauncher
from services.webhooks import WebhookLauncher, links_base, stranded_deliveries

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    started: list[str] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)  # webhook deliveries started (again)


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
    webhooks: WebhookLauncher | None = None,
) -> ReconcileReport:
    """One pass: start every stranded batch (idempotent: the workflow id is the batch id), and every webhook
    delivery recorded but not known to be started (idempotent too: its workflow id is the delivery's)."""
    report = ReconcileReport()
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
    direct: bool = False,
    webhooks: WebhookLauncher | None = None,
) -> None:
    """Reconcile at start (resuming direct batches once) and then every interval."""
    resume = direct
    while True:
        try:
            await reconcile_once(engine, launcher, settings, resume_running_direct=resume, webhooks=webhooks)
            resume = False
        except Exception:
            log.exception("reconciler pass failed")
        await asyncio.sleep(settings.reconcile_interval_seconds)
