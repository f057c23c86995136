"""The in-process driver of webhook deliveries (direct mode): the very attempts the delivery workflow runs, retried
here with the same backoff, as background tasks of this process. Its side effects come as
core.contracts.InProcessWebhooks (wired in api/main.py)."""

import asyncio
import logging
from collections.abc import Sequence

from core.contracts import GiveUpWebhookInput, InProcessWebhooks, WebhookAttemptInput, WebhookRetry
from workflows.direct import exponential_delay
from workflows.webhook_delivery import give_up_reason

log = logging.getLogger(__name__)


class DirectWebhooks:
    """Delivers in this process; a delivery already under way here is not started twice."""

    def __init__(self, webhooks: InProcessWebhooks, retry: WebhookRetry) -> None:
        self.webhooks = webhooks
        self.retry = retry
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, delivery_ids: Sequence[str]) -> None:
        for delivery_id in delivery_ids:
            if delivery_id not in self.tasks:
                task = asyncio.create_task(self.deliver(delivery_id), name=f"webhook-{delivery_id}")
                self.tasks[delivery_id] = task
                task.add_done_callback(lambda _, key=delivery_id: self.tasks.pop(key, None))  # type: ignore[misc]

    async def deliver(self, delivery_id: str) -> None:
        """Attempt until delivered, refused, or out of time (then FAILED), backing off as Temporal would."""
        retry = self.retry
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 1
        while True:
            try:
                result = await self.webhooks.attempt_once(WebhookAttemptInput(delivery_id))
                if not result.retry:
                    return
            except Exception:  # the database, most likely: the attempt is tried again like any other
                log.warning("webhook delivery %s: attempt %s failed", delivery_id, attempt, exc_info=True)
            delay = exponential_delay(retry.initial_interval_seconds, retry.max_interval_seconds, attempt)
            if loop.time() - started + delay > retry.give_up_after_seconds:
                reason = give_up_reason(retry.give_up_after_seconds)
                await asyncio.to_thread(self.webhooks.give_up, GiveUpWebhookInput(delivery_id, reason))
                return
            await asyncio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        """Stop: deliveries left PENDING are started again by the reconciler of the next process."""
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
