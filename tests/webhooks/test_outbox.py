"""An event is recorded with its change and delivered even when nothing started its delivery: a batch the
reconciler refunds (no driver ever ran it) has its batch.failed event recorded in that transaction, and the
reconciler's next pass starts the delivery."""

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col, select
from standardwebhooks.webhooks import Webhook

from activities.webhooks import WebhookActivities
from core.contracts import BatchEnhanceInput
from db.models import Batch, BatchStatus, WebhookDelivery, utcnow
from db.session import session_scope
from services import webhooks
from services.reconciler import reconcile_once
from services.webhooks import EndpointSpec
from storage.local import LocalStorage
from tests.conftest import engine_for, eventually, make_settings
from tests.factories import charge_batch, make_album_with_images
from tests.webhooks.receiver import receiver
from tests.webhooks.test_webhooks import WEBHOOKS, arrived
from workflows.webhook_direct import DirectWebhooks


class Unreachable:
    """A launcher whose every start fails (Temporal is down), so the reconciler refunds the old batch."""

    async def start(self, inp: BatchEnhanceInput) -> None:
        raise ConnectionError("Temporal is unreachable")

    async def cancel(self, batch_id: str) -> None: ...

    async def pause(self, batch_id: str) -> None: ...

    async def resume(self, batch_id: str) -> None: ...

    async def aclose(self) -> None: ...


async def test_the_event_of_a_batch_refunded_by_the_reconciler_is_recorded_with_it_and_delivered(
    tmp_path: Path,
) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'outbox.db'}")  # of its own: the reconciler sees every batch
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(
        str(engine.url), storage, reconcile_grace_seconds=0, reconcile_refund_after_seconds=60, **WEBHOOKS
    )
    user, album, _ = make_album_with_images(engine, storage, 2)
    with receiver([200]) as rx:
        with session_scope(engine) as session:
            spec = EndpointSpec(rx.url(), ("batch.failed",))
            secret = webhooks.create_endpoint(session, user.id, spec, webhooks.destinations(settings)).secret
            batch_id = charge_batch(session, user.id, album).batch.id  # type: ignore[union-attr]
        with session_scope(engine) as session:  # charged two hours ago, never started
            session.exec(
                update(Batch).where(col(Batch.id) == batch_id).values(created_at=utcnow() - timedelta(hours=2))
            )
        deliveries = DirectWebhooks(WebhookActivities.for_settings(engine, settings), webhooks.webhook_retry(settings))
        try:
            first = await reconcile_once(engine, Unreachable(), settings, webhooks=deliveries)
            assert first.refunded == [batch_id] and first.deliveries == []
            with Session(engine) as session:
                assert session.get_one(Batch, batch_id).status == BatchStatus.FAILED
                [pending] = session.exec(select(WebhookDelivery)).all()
                assert pending.status == "PENDING"  # recorded with the refund; nobody started it

            second = await reconcile_once(engine, Unreachable(), settings, webhooks=deliveries)
            assert second.deliveries == [pending.id]
            [request] = await arrived(rx, 1)

            def delivered() -> bool:
                with Session(engine) as session:
                    return session.get_one(WebhookDelivery, pending.id).status == "DELIVERED"

            await eventually(delivered)
        finally:
            await deliveries.aclose()
    event = Webhook(secret).verify(request.body, request.headers)
    assert event["type"] == "batch.failed"
    data = event["data"]
    assert (data["batchId"], data["status"], data["failed"], data["tokensCharged"], data["tokensRefunded"]) == (
        batch_id,
        "FAILED",
        2,
        4,
        4,
    )
