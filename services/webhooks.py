"""Webhooks: a user's endpoints (create, list, update, delete, rotate the secret), their deliveries and attempts,
redelivery and test messages, the callback secret of enhance requests, and starting deliveries (on Temporal, or
in-process). Events themselves are recorded by db.webhook_outbox, with the change they report."""

import asyncio
import base64
import contextlib
import logging
import secrets
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.config import Settings
from core.contracts import WebhookDeliveryInput, WebhookRetry
from core.errors import InvalidRequest, NotFound
from core.vocabulary import BATCH_EVENTS, DeliveryStatus, WebhookEvent
from core.vocabulary import WEBHOOK_TEST_EVENT as WEBHOOK_TEST_EVENT
from core.webhook_rules import Destinations
from db import webhook_outbox
from db.models import (
    WebhookAttempt,
    WebhookCallbackSecret,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
    new_id,
    utcnow,
)
from workflows.webhook_delivery import WebhookDeliveryWorkflow, workflow_id

log = logging.getLogger(__name__)

ALL_EVENTS = tuple(event.value for event in WebhookEvent)
CALLBACK_EVENTS = tuple(BATCH_EVENTS.values())  # a callbackUrl hears its batch's end
NO_CALLBACK_SECRET = "Create a callback secret first (POST /api/webhooks/callback-secret) to use callbackUrl"
MAX_ENDPOINTS_PER_USER = 10
DELIVERIES_LISTED = 50


def webhook_retry(settings: Settings) -> WebhookRetry:
    return WebhookRetry(
        initial_interval_seconds=settings.webhook_retry_initial_seconds,
        max_interval_seconds=settings.webhook_retry_max_interval_seconds,
        give_up_after_seconds=settings.webhook_retry_for_seconds,
        attempt_timeout_seconds=settings.webhook_attempt_timeout_seconds,
    )


def destinations(settings: Settings) -> Destinations:
    return Destinations.of(settings.webhook_allowed_networks, settings.webhook_allow_http)


def links_base(settings: Settings) -> str:
    """What the links in events start with: PUBLIC_URL, or nothing (paths relative to the API)."""
    return (settings.public_url or "").rstrip("/")


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# Starting deliveries ------------------------------------------------------------------------------------------------


class WebhookLauncher(Protocol):
    """Starts deliveries (each one once; starting one again is a no-op)."""

    async def start(self, delivery_ids: Sequence[str]) -> None: ...

    async def aclose(self) -> None: ...


class TemporalWebhooks:
    """Each delivery is a WebhookDeliveryWorkflow whose id is `webhook-{deliveryId}`."""

    def __init__(self, client: Client, task_queue: str, retry: WebhookRetry, start_timeout: float) -> None:
        self.client = client
        self.task_queue = task_queue
        self.retry = retry
        self.start_timeout = start_timeout

    async def start(self, delivery_ids: Sequence[str]) -> None:
        """Start each delivery; one that cannot be started now does not keep the others from starting (the first
        such error is raised after them all, and the reconciler starts it later)."""
        failed: Exception | None = None
        for delivery_id in delivery_ids:
            try:
                await self._start(delivery_id)
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    async def _start(self, delivery_id: str) -> None:
        # Started before: it runs, or delivered (or gave up) already.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await asyncio.wait_for(
                self.client.start_workflow(
                    WebhookDeliveryWorkflow.run,
                    WebhookDeliveryInput(delivery_id, self.retry),
                    id=workflow_id(delivery_id),
                    task_queue=self.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"Webhook delivery {delivery_id}",
                ),
                timeout=self.start_timeout,
            )

    async def aclose(self) -> None:
        """Nothing to release: the client belongs to the caller."""


class WebhookStarts:
    """Starts deliveries from any thread (the batch activities, once their transaction committed); never waits,
    never fails the caller: a delivery not started now is started by the reconciler."""

    def __init__(self, launcher: WebhookLauncher, loop: asyncio.AbstractEventLoop) -> None:
        self.launcher = launcher
        self.loop = loop

    def __call__(self, delivery_ids: list[str]) -> None:
        if delivery_ids:
            started = asyncio.run_coroutine_threadsafe(self.launcher.start(delivery_ids), self.loop)
            started.add_done_callback(_log_failure)


def _log_failure(started: Future[None]) -> None:
    if not started.cancelled() and started.exception() is not None:
        log.warning("could not start webhook deliveries (the reconciler will)", exc_info=started.exception())


def stranded_deliveries(engine: Engine, older_than: timedelta) -> list[str]:
    """PENDING deliveries recorded longer ago than `older_than` (their start may have been lost with a crash)."""
    with Session(engine) as session:
        return list(
            session.exec(
                select(WebhookDelivery.id).where(
                    col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                    col(WebhookDelivery.created_at) < utcnow() - older_than,
                )
            )
        )


# Endpoints ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointSpec:
    url: str
    events: tuple[str, ...]
    description: str | None = None


def check_url(url: str, rules: Destinations) -> None:
    problem = rules.url_problem(url)
    if problem is not None:
        raise InvalidRequest(problem)


def check_events(events: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(events) - set(ALL_EVENTS))
    if unknown:
        raise InvalidRequest(f"Unknown event(s): {', '.join(unknown)}. Known: {', '.join(ALL_EVENTS)}")
    if not events:
        raise InvalidRequest("Subscribe to at least one event")
    return tuple(dict.fromkeys(events))


def create_endpoint(session: Session, user_id: str, spec: EndpointSpec, rules: Destinations) -> WebhookEndpoint:
    """A new endpoint with a new secret (the caller shows it once), in the caller's transaction."""
    check_url(spec.url, rules)
    events = check_events(spec.events)
    if len(endpoints_of(session, user_id)) >= MAX_ENDPOINTS_PER_USER:
        raise InvalidRequest(f"At most {MAX_ENDPOINTS_PER_USER} webhook endpoints per user")
    endpoint = WebhookEndpoint(
        user_id=user_id, url=spec.url, events=" ".join(events), description=spec.description, secret=new_secret()
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def endpoints_of(session: Session, user_id: str, batch_id: str | None = None) -> list[WebhookEndpoint]:
    """The user's endpoints, oldest first; with `batch_id`, that batch's callbackUrl instead."""
    batch = col(WebhookEndpoint.batch_id)
    return list(
        session.exec(
            select(WebhookEndpoint)
            .where(col(WebhookEndpoint.user_id) == user_id, batch.is_(None) if batch_id is None else batch == batch_id)
            .order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id))
        )
    )


def owned_endpoint(session: Session, user_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = None if "\x00" in endpoint_id else session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.user_id != user_id:
        raise NotFound("Webhook endpoint not found")
    return endpoint


def update_endpoint(
    session: Session,
    endpoint: WebhookEndpoint,
    enabled: bool | None,
    events: Sequence[str] | None,
    rotate_secret: bool,
    grace: timedelta,
) -> str | None:
    """Enable (clearing its failure record) or disable the endpoint, change its events, or rotate its secret (the old
    one keeps signing beside the new one for `grace`); returns the new secret when rotated."""
    if enabled is not None:
        endpoint.enabled = enabled
        endpoint.disabled_reason = None if enabled else "by its owner"
        endpoint.failing_since = None
    if events is not None:
        endpoint.events = " ".join(check_events(events))
    secret = None
    if rotate_secret:
        secret = new_secret()
        endpoint.previous_secret, endpoint.previous_secret_expires_at = endpoint.secret, utcnow() + grace
        endpoint.secret = secret
    session.add(endpoint)
    session.flush()
    return secret


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its deliveries and their attempts (a delivery under way then finds nothing)."""
    deliveries = select(WebhookDelivery.id).where(col(WebhookDelivery.endpoint_id) == endpoint.id)
    session.exec(delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(deliveries)))
    session.exec(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint.id))
    session.delete(endpoint)
    session.flush()


# Deliveries ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryLog:
    delivery: WebhookDelivery
    event_type: str
    attempts: list[WebhookAttempt]


def deliveries_of(session: Session, endpoint: WebhookEndpoint, limit: int = DELIVERIES_LISTED) -> list[DeliveryLog]:
    """The endpoint's newest deliveries, each with its event type and its attempts in order."""
    rows = session.exec(
        select(WebhookDelivery, WebhookMessage.event_type)
        .join(WebhookMessage, col(WebhookMessage.id) == col(WebhookDelivery.message_id))
        .where(col(WebhookDelivery.endpoint_id) == endpoint.id)
        .order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id))
        .limit(limit)
    ).all()
    attempts: dict[str, list[WebhookAttempt]] = {delivery.id: [] for delivery, _ in rows}
    for attempt in session.exec(
        select(WebhookAttempt)
        .where(col(WebhookAttempt.delivery_id).in_(list(attempts)))
        .order_by(col(WebhookAttempt.number))
    ):
        attempts[attempt.delivery_id].append(attempt)
    return [DeliveryLog(delivery, event_type, attempts[delivery.id]) for delivery, event_type in rows]


def redeliver(session: Session, endpoint: WebhookEndpoint, delivery_id: str) -> WebhookDelivery:
    """A new delivery of the same message (same `webhook-id`) to the endpoint, which must be enabled."""
    original = None if "\x00" in delivery_id else session.get(WebhookDelivery, delivery_id)
    if original is None or original.endpoint_id != endpoint.id:
        raise NotFound("Delivery not found")
    return _new_delivery(session, endpoint, original.message_id)


def send_test(session: Session, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` message to the endpoint, whatever its events."""
    message = WebhookMessage(
        id=f"msg_{new_id()}",
        user_id=endpoint.user_id,
        event_type=WEBHOOK_TEST_EVENT,
        body=webhook_outbox.message_body(WEBHOOK_TEST_EVENT, {"endpointId": endpoint.id}),
    )
    session.add(message)
    session.flush()
    return _new_delivery(session, endpoint, message.id)


def _new_delivery(session: Session, endpoint: WebhookEndpoint, message_id: str) -> WebhookDelivery:
    if not endpoint.enabled:
        raise InvalidRequest("The endpoint is disabled: enable it first (PATCH with enabled: true)")
    delivery = WebhookDelivery(message_id=message_id, endpoint_id=endpoint.id)
    session.add(delivery)
    session.flush()
    return delivery


# Callbacks of enhance requests ----------------------------------------------------------------------------------------


def rotate_callback_secret(session: Session, user_id: str, grace: timedelta) -> str:
    """Create the user's callback secret, or replace it (the old one keeps signing for `grace`); returns it."""
    secret = new_secret()
    current = session.get(WebhookCallbackSecret, user_id)
    if current is None:
        session.add(WebhookCallbackSecret(user_id=user_id, secret=secret))
    else:
        current.previous_secret, current.previous_secret_expires_at = current.secret, utcnow() + grace
        current.secret = secret
        session.add(current)
    session.flush()
    return secret


def add_callback(session: Session, user_id: str, batch_id: str, url: str, rules: Destinations) -> None:
    """The enhance request's callbackUrl, as an endpoint of the batch's events signed with the callback secret."""
    check_url(url, rules)
    key = session.get(WebhookCallbackSecret, user_id)
    if key is None:
        raise InvalidRequest(NO_CALLBACK_SECRET)
    session.add(
        WebhookEndpoint(
            user_id=user_id,
            url=url,
            events=" ".join(CALLBACK_EVENTS),
            description=f"callbackUrl of batch {batch_id}",
            secret=key.secret,
            previous_secret=key.previous_secret,
            previous_secret_expires_at=key.previous_secret_expires_at,
            batch_id=batch_id,
        )
    )
    session.flush()


def check_callback(session: Session, user_id: str, url: str, rules: Destinations) -> None:
    """Refuse a callbackUrl before anything is charged: a bad URL, or no callback secret to sign with."""
    check_url(url, rules)
    if session.get(WebhookCallbackSecret, user_id) is None:
        raise InvalidRequest(NO_CALLBACK_SECRET)


def event_type_of(session: Session, delivery: WebhookDelivery) -> str:
    return session.get_one(WebhookMessage, delivery.message_id).event_type
