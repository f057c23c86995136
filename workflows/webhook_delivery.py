"""WebhookDeliveryWorkflow: one event to one endpoint, retried for up to a day.

A workflow of its own per delivery, started when the event is recorded, rather than an activity of the batch
workflow: the batch ends (and its books close) without waiting on anyone's receiver; a job's event goes out while
its batch still runs; a delivery outlives its batch by the day its retries may take, and is found, retried or
redelivered on its own (workflow id `webhook-{deliveryId}`) in the Web UI. A receiver can neither block nor fail a
batch: the batch workflow never hears of it.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        GiveUpWebhookInput,
        WebhookAttemptInput,
        WebhookAttemptResult,
        WebhookDeliveryInput,
        webhook_workflow_id,
    )
    from core.vocabulary import Activity, DeliveryStatus

# Beyond the attempt's own timeout (its HTTP request), the time its bookkeeping may take: two short transactions.
ATTEMPT_BOOKKEEPING = timedelta(seconds=5)
BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
BOOKKEEPING_TIMEOUT = timedelta(seconds=60)


def workflow_id(delivery_id: str) -> str:
    return webhook_workflow_id(delivery_id)


@workflow.defn
class WebhookDeliveryWorkflow:
    """Attempts until the receiver answers 2xx, backing off exponentially, for at most `give_up_after_seconds`."""

    @workflow.run
    async def run(self, inp: WebhookDeliveryInput) -> str:
        retry = inp.retry
        try:
            result: WebhookAttemptResult = await workflow.execute_activity(
                Activity.ATTEMPT_WEBHOOK,
                WebhookAttemptInput(inp.delivery_id),
                result_type=WebhookAttemptResult,
                start_to_close_timeout=timedelta(seconds=retry.attempt_timeout_seconds) + ATTEMPT_BOOKKEEPING,
                schedule_to_close_timeout=timedelta(seconds=retry.give_up_after_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=retry.initial_interval_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=retry.max_interval_seconds),
                ),  # an attempt that must not be retried (a refused address) returns, its delivery FAILED
            )
        except ActivityError:  # out of time: the last attempt's error is on the delivery's row
            await workflow.execute_activity(
                Activity.GIVE_UP_WEBHOOK,
                GiveUpWebhookInput(inp.delivery_id, give_up_reason(retry.give_up_after_seconds)),
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=BOOKKEEPING_RETRY,
            )
            return DeliveryStatus.FAILED
        return DeliveryStatus.DELIVERED if result.delivered else DeliveryStatus.FAILED


def give_up_reason(give_up_after_seconds: float) -> str:
    hours = give_up_after_seconds / 3600
    span = f"{hours:g} h" if hours >= 1 else f"{give_up_after_seconds:g} s"
    return f"Not delivered within {span}"
