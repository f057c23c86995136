"""Activities of a webhook delivery: one attempt (resolve, check the addresses, sign, POST, log), and giving up.

The same methods run under Temporal (the delivery workflow's activities, retried by its RetryPolicy) and in direct
mode (called by workflows/webhook_direct.py, which retries them in-process). An attempt never raises for the
receiver's sake: it says how it ended, and the Temporal activity turns "try again" into an error to retry.
"""

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import Engine, func, update
from sqlmodel import Session, col
from standardwebhooks.webhooks import Webhook
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.config import Settings
from core.contracts import GiveUpWebhookInput, WebhookAttemptInput, WebhookAttemptResult
from core.vocabulary import (
    MAX_WEBHOOK_EXCERPT,
    MAX_WEBHOOK_RESPONSE_BYTES,
    Activity,
    DeliveryStatus,
)
from core.webhook_rules import Destinations, IPAddress
from db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookMessage, utcnow
from db.session import session_scope

log = logging.getLogger(__name__)

USER_AGENT = "album-enhance-webhooks/1"


class Refused(Exception):
    """The receiver's address is not allowed (checked after DNS): no retry sends it elsewhere."""


@dataclass(frozen=True)
class _Target:
    """What one attempt sends, read when it starts (so a rotated secret or a disabled endpoint counts at once)."""

    attempt_id: int
    endpoint_id: str
    url: str
    message_id: str
    body: str
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class _Answer:
    status_code: int | None = None
    excerpt: str | None = None
    error: str | None = None
    refused: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signing_secrets(secret: str, previous: str | None, previous_expires_at: datetime | None) -> tuple[str, ...]:
    """The secrets that sign now: the current one, and the previous one during its grace period."""
    if previous is not None and previous_expires_at is not None and previous_expires_at > utcnow():
        return (secret, previous)
    return (secret,)


def signature_headers(message_id: str, body: str, secrets: tuple[str, ...], at: datetime) -> dict[str, str]:
    """Standard Webhooks' headers: one `v1,` signature per valid secret, space-separated."""
    signatures = " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }


class WebhookActivities:
    """Holds the database engine and the delivery rules (injected, so tests can set them)."""

    def __init__(
        self, engine: Engine, destinations: Destinations, attempt_timeout_seconds: float, disable_after: timedelta
    ) -> None:
        self.engine = engine
        self.destinations = destinations
        self.attempt_timeout_seconds = attempt_timeout_seconds
        self.disable_after = disable_after

    @classmethod
    def for_settings(cls, engine: Engine, settings: Settings) -> "WebhookActivities":
        return cls(
            engine,
            Destinations.of(settings.webhook_allowed_networks, settings.webhook_allow_http),
            settings.webhook_attempt_timeout_seconds,
            timedelta(days=settings.webhook_disable_after_days),
        )

    @activity.defn(name=Activity.ATTEMPT_WEBHOOK)
    async def attempt(self, inp: WebhookAttemptInput) -> WebhookAttemptResult:
        """The Temporal activity: attempt_once, with "try again" raised so the RetryPolicy backs off and retries."""
        result = await self.attempt_once(inp)
        if result.retry:
            raise ApplicationError(result.error or "Not delivered", type="WebhookNotDelivered")
        return result

    async def attempt_once(self, inp: WebhookAttemptInput) -> WebhookAttemptResult:
        """One attempt, logged: its row is written before the request and completed after it."""
        target = await asyncio.to_thread(self._begin, inp.delivery_id)
        if isinstance(target, WebhookAttemptResult):
            return target
        started = time.monotonic()
        try:
            answer = await asyncio.wait_for(self._send(target), timeout=self.attempt_timeout_seconds)
        except TimeoutError:
            answer = _Answer(error=f"No answer within {self.attempt_timeout_seconds:g} s")
        except Refused as exc:
            answer = _Answer(error=str(exc), refused=True)
        except httpx.HTTPError as exc:
            answer = _Answer(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        except OSError as exc:
            answer = _Answer(error=f"Could not connect: {exc}")
        latency_ms = round((time.monotonic() - started) * 1000)
        return await asyncio.to_thread(self._finish, inp.delivery_id, target, answer, latency_ms)

    @activity.defn(name=Activity.GIVE_UP_WEBHOOK)
    def give_up(self, inp: GiveUpWebhookInput) -> None:
        """Mark a delivery still PENDING as FAILED: it ran out of time (its last attempt's error is kept)."""
        with session_scope(self.engine) as session:
            delivery = session.get(WebhookDelivery, inp.delivery_id)
            last = delivery.error if delivery is not None else None
            _close(session, inp.delivery_id, DeliveryStatus.FAILED, f"{inp.reason}; last error: {last or 'none'}")

    # Steps ---------------------------------------------------------------------------------------------------------

    def _begin(self, delivery_id: str) -> _Target | WebhookAttemptResult:
        """Count the attempt and write its row; or say why there is nothing to send."""
        with session_scope(self.engine) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                return WebhookAttemptResult(delivery_id, delivered=False, retry=False, error="No such delivery")
            if delivery.status != DeliveryStatus.PENDING:
                # Finished by an earlier attempt whose worker died before it could say so.
                return WebhookAttemptResult(
                    delivery_id, delivered=delivery.status == DeliveryStatus.DELIVERED, retry=False
                )
            endpoint = session.get_one(WebhookEndpoint, delivery.endpoint_id)
            if not endpoint.enabled:
                reason = f"Endpoint disabled: {endpoint.disabled_reason or 'by its owner'}"
                _close(session, delivery_id, DeliveryStatus.FAILED, reason)
                return WebhookAttemptResult(delivery_id, delivered=False, retry=False, error=reason)
            message = session.get_one(WebhookMessage, delivery.message_id)
            number = session.exec(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == delivery_id)
                .values(attempts=WebhookDelivery.attempts + 1)
                .returning(col(WebhookDelivery.attempts))
            ).one()[0]
            attempt = WebhookAttempt(delivery_id=delivery_id, number=number)
            session.add(attempt)
            session.flush()
            assert attempt.id is not None
            secrets = signing_secrets(endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at)
            return _Target(attempt.id, endpoint.id, endpoint.url, message.id, message.body, secrets)

    async def _send(self, target: _Target) -> _Answer:
        """POST the message to an address of the URL's host that passes the rules; no redirect is followed, and at
        most MAX_WEBHOOK_RESPONSE_BYTES of the answer are read."""
        parts = urlsplit(target.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        problem = self.destinations.url_problem(target.url)  # the rules of now (e.g. http no longer allowed)
        if problem is not None:
            raise Refused(problem)
        address = await self._vetted_address(host, port)
        netloc = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
        url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        headers = {
            "host": parts.netloc,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signature_headers(target.message_id, target.body, target.secrets, datetime.now(UTC)),
        }
        # The certificate is checked against the URL's host, though the connection goes to the vetted address.
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        async with (
            httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=self.attempt_timeout_seconds) as client,
            client.stream("POST", url, content=target.body.encode(), headers=headers, extensions=extensions) as answer,
        ):
            received = bytearray()
            async for chunk in answer.aiter_raw():
                received += chunk
                if len(received) >= MAX_WEBHOOK_RESPONSE_BYTES:
                    break
        excerpt = bytes(received[:MAX_WEBHOOK_EXCERPT]).decode("utf-8", "replace") or None
        error = None
        if 300 <= answer.status_code < 400:
            error = f"Redirect to {answer.headers.get('location', '?')[:200]} not followed"
        elif not 200 <= answer.status_code < 300:
            error = f"HTTP {answer.status_code}"
        return _Answer(answer.status_code, excerpt, error)

    async def _vetted_address(self, host: str, port: int) -> IPAddress:
        """Resolve the host now and check every address it has: one refused address refuses the host."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {host}: {exc.strerror}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        for address in addresses:
            problem = self.destinations.address_problem(address)
            if problem is not None:
                raise Refused(f"{problem} ({host})" if str(address) != host else problem)
        return addresses[0]

    def _finish(self, delivery_id: str, target: _Target, answer: _Answer, latency_ms: int) -> WebhookAttemptResult:
        """Complete the attempt's row; a 2xx delivers; a failure counts against the endpoint (disabled once it has
        failed for `disable_after` without a success) and ends the delivery when refused or disabled."""
        now = utcnow()
        with session_scope(self.engine) as session:
            session.exec(
                update(WebhookAttempt)
                .where(col(WebhookAttempt.id) == target.attempt_id)
                .values(
                    finished_at=now,
                    status_code=answer.status_code,
                    latency_ms=latency_ms,
                    error=answer.error[:MAX_WEBHOOK_EXCERPT] if answer.error else None,
                    response_excerpt=answer.excerpt,
                )
            )
            if answer.delivered:
                _close(session, delivery_id, DeliveryStatus.DELIVERED, None)
                session.exec(
                    update(WebhookEndpoint)
                    .where(col(WebhookEndpoint.id) == target.endpoint_id)
                    .values(failing_since=None)
                )
                return WebhookAttemptResult(delivery_id, delivered=True, retry=False, status_code=answer.status_code)
            disabled = self._count_failure(session, target.endpoint_id, now)
            error = answer.error or "Not delivered"
            if answer.refused or disabled is not None:
                _close(session, delivery_id, DeliveryStatus.FAILED, disabled or error)
                return WebhookAttemptResult(delivery_id, False, False, answer.status_code, disabled or error)
            session.exec(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == delivery_id)
                .values(error=error[:MAX_WEBHOOK_EXCERPT])
            )
            return WebhookAttemptResult(delivery_id, False, True, answer.status_code, error)

    def _count_failure(self, session: Session, endpoint_id: str, now: datetime) -> str | None:
        """Note the endpoint failing (since its first failure after a success); disable it once that is longer than
        `disable_after`, and say so."""
        session.exec(
            update(WebhookEndpoint)
            .where(col(WebhookEndpoint.id) == endpoint_id)
            .values(failing_since=func.coalesce(WebhookEndpoint.failing_since, now))
        )
        endpoint = session.get_one(WebhookEndpoint, endpoint_id)
        session.refresh(endpoint)
        if endpoint.failing_since is None or now - endpoint.failing_since < self.disable_after:
            return None
        reason = f"failing since {endpoint.failing_since.isoformat(timespec='seconds')}"
        session.exec(
            update(WebhookEndpoint)
            .where(col(WebhookEndpoint.id) == endpoint_id)
            .values(enabled=False, disabled_reason=reason)
        )
        log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)
        return f"Endpoint disabled: {reason}"

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.attempt, self.give_up]


def _close(session: Session, delivery_id: str, status: DeliveryStatus, error: str | None) -> None:
    """End a PENDING delivery (an ended one keeps how it ended)."""
    session.exec(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.id) == delivery_id, col(WebhookDelivery.status) == DeliveryStatus.PENDING)
        .values(status=status, error=error[:MAX_WEBHOOK_EXCERPT] if error else None, finished_at=utcnow())
    )
