"""Webhook endpoints of the caller: create (the secret is shown once), list, read, update (enable, events, rotate
the secret), delete; their deliveries with every attempt; redelivery and test messages; the callback secret."""

import logging
from datetime import timedelta
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Query, Response, status

from api.deps import CurrentUser, OwnedWebhook, SessionDep, SettingsDep, WebhookLauncherDep
from api.schemas import (
    NO_NUL,
    CallbackSecretOut,
    ErrorOut,
    WebhookAttemptOut,
    WebhookDeliveriesOut,
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointOut,
    WebhookEndpointsOut,
    WebhookEndpointUpdate,
)
from db.models import WebhookEndpoint
from db.session import transaction
from services import webhooks
from services.webhooks import DeliveryLog, EndpointSpec, WebhookLauncher

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


def _out(endpoint: WebhookEndpoint, secret: str | None = None) -> WebhookEndpointOut:
    return WebhookEndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events.split(),
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
        created_at=endpoint.created_at,
        secret=secret,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
    )


def _delivery_out(entry: DeliveryLog) -> WebhookDeliveryOut:
    delivery = entry.delivery
    return WebhookDeliveryOut(
        id=delivery.id,
        webhook_id=delivery.message_id,
        event_type=entry.event_type,
        status=delivery.status,
        error=delivery.error,
        created_at=delivery.created_at,
        finished_at=delivery.finished_at,
        attempts=[WebhookAttemptOut.model_validate(attempt) for attempt in entry.attempts],
    )


def _start(launcher: WebhookLauncher, delivery_id: str) -> None:
    """Start a committed delivery; if that fails now, the reconciler starts it (it is PENDING)."""
    try:
        anyio.from_thread.run(launcher.start, [delivery_id])
    except Exception:
        log.warning("could not start webhook delivery %s now", delivery_id, exc_info=True)


@router.post("", response_model=WebhookEndpointOut, status_code=status.HTTP_201_CREATED, responses=_errors(400, 401))
def create_webhook(
    body: WebhookEndpointCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> WebhookEndpointOut:
    """Add an endpoint. The answer carries its signing secret (`whsec_...`), shown this once."""
    spec = EndpointSpec(body.url, tuple(body.events or webhooks.ALL_EVENTS), body.description)
    with transaction(session):
        endpoint = webhooks.create_endpoint(session, user.id, spec, webhooks.destinations(settings))
    return _out(endpoint, endpoint.secret)


@router.get("", response_model=WebhookEndpointsOut, responses=_errors(400, 401))
def list_webhooks(
    user: CurrentUser,
    session: SessionDep,
    batch_id: Annotated[
        str | None,
        Query(alias="batchId", max_length=100, pattern=NO_NUL, description="The callbackUrl of this batch instead"),
    ] = None,
) -> WebhookEndpointsOut:
    """The caller's endpoints (secrets are never listed); with `batchId`, the callbackUrl of that enhance request,
    whose deliveries are then at /api/webhooks/{id}/deliveries like any endpoint's."""
    found = webhooks.endpoints_of(session, user.id, batch_id)
    return WebhookEndpointsOut(endpoints=[_out(endpoint) for endpoint in found])


@router.post(
    "/callback-secret", response_model=CallbackSecretOut, status_code=status.HTTP_201_CREATED, responses=_errors(401)
)
def rotate_callback_secret(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> CallbackSecretOut:
    """Create (or rotate) the secret that signs the callbacks of enhance requests' `callbackUrl`; shown once. After
    a rotation the old secret keeps signing beside the new one for a grace period."""
    grace = timedelta(seconds=settings.webhook_secret_grace_seconds)
    with transaction(session):
        secret = webhooks.rotate_callback_secret(session, user.id, grace)
    return CallbackSecretOut(secret=secret)


@router.get("/{webhookId}", response_model=WebhookEndpointOut, responses=_errors(401, 404))
def read_webhook(endpoint: OwnedWebhook) -> WebhookEndpointOut:
    return _out(endpoint)


@router.patch("/{webhookId}", response_model=WebhookEndpointOut, responses=_errors(400, 401, 404))
def update_webhook(
    body: WebhookEndpointUpdate, endpoint: OwnedWebhook, session: SessionDep, settings: SettingsDep
) -> WebhookEndpointOut:
    """Re-enable (or disable) the endpoint, change its events, or rotate its secret: the new one is in the answer,
    once, and the old one keeps signing beside it for WEBHOOK_SECRET_GRACE_SECONDS."""
    grace = timedelta(seconds=settings.webhook_secret_grace_seconds)
    with transaction(session):
        secret = webhooks.update_endpoint(session, endpoint, body.enabled, body.events, body.rotate_secret, grace)
    return _out(endpoint, secret)


@router.delete(
    "/{webhookId}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=_errors(401, 404)
)
def delete_webhook(endpoint: OwnedWebhook, session: SessionDep) -> Response:
    """Delete the endpoint, its deliveries and their log."""
    with transaction(session):
        webhooks.delete_endpoint(session, endpoint)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhookId}/deliveries", response_model=WebhookDeliveriesOut, responses=_errors(401, 404))
def list_deliveries(endpoint: OwnedWebhook, session: SessionDep) -> WebhookDeliveriesOut:
    """The endpoint's newest deliveries (50), each with every attempt: status code, latency, error."""
    return WebhookDeliveriesOut(
        deliveries=[_delivery_out(entry) for entry in webhooks.deliveries_of(session, endpoint)]
    )


@router.post(
    "/{webhookId}/deliveries/{deliveryId}/redeliver",
    response_model=WebhookDeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_errors(400, 401, 404),
)
def redeliver(
    deliveryId: str,  # noqa: N803  (the path's name)
    endpoint: OwnedWebhook,
    session: SessionDep,
    launcher: WebhookLauncherDep,
) -> WebhookDeliveryOut:
    """Send a delivery's message again (same `webhook-id`), as a new delivery; the endpoint must be enabled."""
    with transaction(session):
        delivery = webhooks.redeliver(session, endpoint, deliveryId)
        event_type = webhooks.event_type_of(session, delivery)
    _start(launcher, delivery.id)
    return _delivery_out(DeliveryLog(delivery, event_type, []))


@router.post(
    "/{webhookId}/test",
    response_model=WebhookDeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=_errors(400, 401, 404),
)
def send_test(endpoint: OwnedWebhook, session: SessionDep, launcher: WebhookLauncherDep) -> WebhookDeliveryOut:
    """Send a `webhook.test` message now (its delivery shows in the log like any other)."""
    with transaction(session):
        delivery = webhooks.send_test(session, endpoint)
    _start(launcher, delivery.id)
    return _delivery_out(DeliveryLog(delivery, webhooks.WEBHOOK_TEST_EVENT, []))
