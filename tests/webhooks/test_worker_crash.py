"""A worker killed while its delivery waits on the receiver: a new worker delivers the same message (the same
`webhook-id`), at least once; the attempt that died shows in the log as one that never finished."""

import json
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from storage.local import LocalStorage
from tests.conftest import temporal_api
from tests.factories import make_user
from tests.reliability.processes import process_set, worker_env
from tests.reliability.test_crashes import wait_for_worker
from tests.webhooks.receiver import HANG, receiver
from tests.webhooks.test_webhooks import LOOPBACK, WEBHOOKS, add_endpoint, arrived, send_test, settled, verified

pytestmark = [pytest.mark.slow]

ATTEMPT_TIMEOUT = 3.0


WEBHOOK_SETTINGS = (
    "webhook_allow_http",
    "webhook_attempt_timeout_seconds",
    "webhook_retry_initial_seconds",
    "webhook_retry_max_interval_seconds",
)


async def test_a_worker_killed_mid_delivery_is_replaced_and_the_same_message_is_delivered(
    temporal_env: WorkflowEnvironment, primary_db_url: str, storage: LocalStorage, tmp_path: Path
) -> None:
    settings = {**WEBHOOKS, "webhook_attempt_timeout_seconds": ATTEMPT_TIMEOUT}
    with (
        receiver([HANG, 200]) as rx,
        temporal_api(temporal_env.client, primary_db_url, storage, None, **settings) as h,
        process_set(tmp_path / "processes") as processes,
    ):
        env = worker_env(
            h.settings, *WEBHOOK_SETTINGS, webhook_allowed_networks=json.dumps(LOOPBACK)
        )  # lists as JSON, as an operator writes them
        first = processes.worker(env)
        await wait_for_worker(temporal_env.client, h.settings.task_queue)
        async with h.async_http() as http:
            user = make_user(h.engine)
            endpoint = await add_endpoint(http, user, rx.url())
            await send_test(http, user, endpoint["id"])
            await arrived(rx, 1)  # the first worker's attempt is waiting on the receiver
            first.kill()
            processes.worker(env)
            [delivery] = await settled(http, user, endpoint["id"], within=90)

    assert delivery["status"] == "DELIVERED"
    died, *_, last = delivery["attempts"]
    assert died["number"] == 1 and died["finishedAt"] is None and died["statusCode"] is None
    assert last["statusCode"] == 200
    assert len(rx.received) >= 2
    assert {r.headers["webhook-id"] for r in rx.received} == {delivery["webhookId"]}
    assert all(verified(endpoint["secret"], r)["type"] == "webhook.test" for r in rx.received)
