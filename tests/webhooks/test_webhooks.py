"""Webhooks end to end, with a real receiver (an HTTP server on loopback) and, in Temporal mode, the real dev
server and worker: signatures checked with the standardwebhooks library's receiver side, event bodies, retries with
backoff, attempts that time out, secret rotation, address refusals after DNS, disabling and redelivery."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.testing import WorkflowEnvironment

from core.webhook_rules import Destinations
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings, temporal_stack
from tests.db_helpers import original_key_of
from tests.factories import UserWithKey, make_album, make_image, make_user
from tests.storage_faults import GatedStorage
from tests.webhooks.receiver import HANG, Receiver, receiver

LOOPBACK = ["127.0.0.0/8", "::1/128"]
# Receivers on this machine over http, quick retries: what the tests (and `make dev`) allow.
WEBHOOKS: dict[str, object] = {
    "webhook_allowed_networks": LOOPBACK,
    "webhook_allow_http": True,
    "webhook_retry_initial_seconds": 0.2,
    "webhook_retry_max_interval_seconds": 0.5,
    "webhook_attempt_timeout_seconds": 2.0,
}


@contextlib.asynccontextmanager
async def stack(
    mode: str, env: WorkflowEnvironment, db_url: str, storage: LocalStorage, **overrides: object
) -> AsyncIterator[Harness]:
    settings = {**WEBHOOKS, **overrides}
    if mode == "temporal":
        async with temporal_stack(env.client, db_url, storage, None, **settings) as h:
            yield h
        return
    with LiveServer(make_settings(db_url, storage, **settings), storage=storage) as api:
        yield Harness(api.settings, engine_for(db_url), storage, api)


@pytest.fixture(params=["direct", "temporal"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def add_endpoint(http: httpx.AsyncClient, user: UserWithKey, url: str, **body: object) -> dict[str, Any]:
    created = await http.post("/api/webhooks", headers=user.headers, json={"url": url, **body})
    assert created.status_code == 201, created.text
    answer: dict[str, Any] = created.json()
    assert answer["secret"].startswith("whsec_")
    return answer


async def deliveries(http: httpx.AsyncClient, user: UserWithKey, endpoint_id: str) -> list[dict[str, Any]]:
    listed = await http.get(f"/api/webhooks/{endpoint_id}/deliveries", headers=user.headers)
    assert listed.status_code == 200, listed.text
    found: list[dict[str, Any]] = listed.json()["deliveries"]
    return found


async def settled(
    http: httpx.AsyncClient, user: UserWithKey, endpoint_id: str, count: int = 1, within: float = 60
) -> list[dict[str, Any]]:
    """The endpoint's deliveries once `count` of them have ended (DELIVERED or FAILED)."""
    deadline = time.monotonic() + within
    while True:
        found = await deliveries(http, user, endpoint_id)
        if sum(delivery["status"] != "PENDING" for delivery in found) >= count:
            return found
        assert time.monotonic() < deadline, f"deliveries not settled within {within}s: {found}"
        await asyncio.sleep(0.1)


async def send_test(http: httpx.AsyncClient, user: UserWithKey, endpoint_id: str) -> dict[str, Any]:
    sent = await http.post(f"/api/webhooks/{endpoint_id}/test", headers=user.headers)
    assert sent.status_code == 202, sent.text
    answer: dict[str, Any] = sent.json()
    return answer


def verified(secret: str, request: Any) -> dict[str, Any]:
    """The body, verified as a receiver verifies it: with the library's own receiver side."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


async def arrived(rx: Receiver, count: int, within: float = 30) -> list[Any]:
    return await asyncio.to_thread(rx.wait_for, count, within)


# Events --------------------------------------------------------------------------------------------------------------


async def test_batch_and_job_events_are_signed_and_say_what_happened(
    mode: str, temporal_env: WorkflowEnvironment, primary_db_url: str, storage: LocalStorage
) -> None:
    with receiver([200]) as rx:
        async with stack(mode, temporal_env, primary_db_url, storage) as h, h.async_http() as http:
            user = make_user(h.engine, tokens=100)
            album = make_album(h.engine, user)
            good = make_image(h.engine, h.storage, album, sort_order=0)
            broken = make_image(h.engine, h.storage, album, data=b"not an image", sort_order=1)
            endpoint = await add_endpoint(http, user, rx.url())
            enhanced = await http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"})
            assert enhanced.status_code == 200, enhanced.text
            batch_id = enhanced.json()["batchId"]
            ended = await settled(http, user, endpoint["id"], count=3)

            assert sorted(delivery["eventType"] for delivery in ended) == [
                "batch.completed",
                "job.completed",
                "job.failed",
            ]
            assert all(delivery["status"] == "DELIVERED" for delivery in ended)
            events = {}
            for request in rx.received:
                payload = verified(endpoint["secret"], request)
                events[payload["type"]] = payload
                assert request.path == "/hooks"
                assert request.headers["content-type"] == "application/json"
            assert {d["webhookId"] for d in ended} == {r.headers["webhook-id"] for r in rx.received}

            job_ids = {job["imageId"]: job["enhancementJobId"] for job in enhanced.json()["jobs"]}
            completed = events["job.completed"]["data"]
            assert completed["jobId"] == job_ids[good]
            assert completed["batchId"] == batch_id and completed["status"] == "COMPLETED"
            assert completed["tokensCharged"] == 2 and completed["tokensRefunded"] == 0
            failed = events["job.failed"]["data"]
            assert failed["jobId"] == job_ids[broken] and failed["status"] == "FAILED"
            assert failed["tokensRefunded"] == 2 and failed["error"]
            assert "result" not in failed["links"]
            batch = events["batch.completed"]["data"]
            assert batch["batchId"] == batch_id and batch["albumId"] == album and batch["status"] == "COMPLETED"
            assert (batch["totalImages"], batch["completed"], batch["failed"], batch["cancelled"]) == (2, 1, 1, 0)
            assert (batch["tokensCharged"], batch["tokensRefunded"]) == (4, 2)
            assert batch["links"]["results"] == f"/api/albums/{album}/results.zip"

            # The result link works with the owner's credentials, and only with them.
            result = completed["links"]["result"]
            assert result == f"/api/jobs/{job_ids[good]}/result"
            owned = await http.get(result, headers=user.headers)
            assert owned.status_code == 200 and owned.headers["content-type"] == "image/jpeg"
            assert (await http.get(result)).status_code == 401
            stranger = make_user(h.engine)
            assert (await http.get(result, headers=stranger.headers)).status_code == 404


async def test_a_cancelled_batch_says_what_was_enhanced_and_refunded(
    mode: str, temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    storage = GatedStorage(tmp_path / "storage")
    with receiver([200]) as rx:
        async with stack(mode, temporal_env, primary_db_url, storage) as h, h.async_http() as http:
            user = make_user(h.engine, tokens=100)
            album = make_album(h.engine, user)
            images = [make_image(h.engine, storage, album, sort_order=n) for n in range(3)]
            storage.gate(original_key_of(h.engine, images[1]))  # the batch holds at the second photo
            endpoint = await add_endpoint(http, user, rx.url(), events=["batch.cancelled", "batch.completed"])
            enhanced = await http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"})
            batch_id = enhanced.json()["batchId"]
            await asyncio.to_thread(storage.waiting.wait, 30)
            cancelled = await http.post(f"/api/batches/{batch_id}/cancel", headers=user.headers)
            assert cancelled.status_code == 202, cancelled.text
            [delivery] = await settled(http, user, endpoint["id"])
    assert delivery["eventType"] == "batch.cancelled" and delivery["status"] == "DELIVERED"
    [request] = rx.received
    data = verified(endpoint["secret"], request)["data"]
    assert (data["batchId"], data["status"], data["completed"], data["cancelled"]) == (batch_id, "CANCELLED", 1, 2)
    assert (data["tokensCharged"], data["tokensRefunded"]) == (6, 4)
    assert [job["status"] for job in data["jobs"]] == ["COMPLETED", "CANCELLED", "CANCELLED"]
    assert "result" in data["jobs"][0]["links"] and "result" not in data["jobs"][1]["links"]


async def test_a_receiver_that_hangs_never_holds_the_batch(primary_db_url: str, storage: LocalStorage) -> None:
    with receiver([HANG]) as rx:
        settings = make_settings(primary_db_url, storage, **{**WEBHOOKS, "webhook_attempt_timeout_seconds": 30})
        with LiveServer(settings) as api:
            engine = engine_for(primary_db_url)
            user = make_user(engine)
            album = make_album(engine, user)
            make_image(engine, storage, album)
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
                endpoint = await add_endpoint(http, user, rx.url(), events=["job.completed"])
                enhanced = await http.post(
                    f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"}
                )
                await arrived(rx, 1)  # the job's event is on its way and its receiver holds it
                deadline = time.monotonic() + 30
                while (await http.get(f"/api/batches/{enhanced.json()['batchId']}", headers=user.headers)).json()[
                    "status"
                ] != "COMPLETED":
                    assert time.monotonic() < deadline, "the batch waited for its webhook"
                    await asyncio.sleep(0.05)
                assert [d["status"] for d in await deliveries(http, user, endpoint["id"])] == ["PENDING"]


# Retries -------------------------------------------------------------------------------------------------------------


async def test_500_three_times_then_200_is_delivered_once_after_four_logged_attempts(
    mode: str, temporal_env: WorkflowEnvironment, primary_db_url: str, storage: LocalStorage
) -> None:
    with receiver([500, 500, 500, 200]) as rx:
        async with stack(mode, temporal_env, primary_db_url, storage) as h, h.async_http() as http:
            user = make_user(h.engine)
            endpoint = await add_endpoint(http, user, rx.url())
            await send_test(http, user, endpoint["id"])
            [delivery] = await settled(http, user, endpoint["id"])

            assert delivery["status"] == "DELIVERED" and delivery["error"] is None
            attempts = delivery["attempts"]
            assert [a["number"] for a in attempts] == [1, 2, 3, 4]
            assert [a["statusCode"] for a in attempts] == [500, 500, 500, 200]
            assert [a["error"] for a in attempts] == ["HTTP 500", "HTTP 500", "HTTP 500", None]
            assert all(a["latencyMs"] is not None and a["finishedAt"] is not None for a in attempts)
            assert attempts[3]["responseExcerpt"] == "answer 200 to request 4"
            # Backoff: each wait at least the one before (0.2 s, 0.4 s, 0.5 s at most).
            starts = [time.mktime(time.strptime(a["startedAt"][:19], "%Y-%m-%dT%H:%M:%S")) for a in attempts]
            assert starts == sorted(starts)
            assert len(rx.received) == 4
            assert {r.headers["webhook-id"] for r in rx.received} == {delivery["webhookId"]}
            for request in rx.received:
                assert verified(endpoint["secret"], request)["type"] == "webhook.test"
            assert len({r.body for r in rx.received}) == 1  # the same bytes every time


async def test_an_attempt_that_gets_no_answer_times_out_and_is_retried(
    mode: str, temporal_env: WorkflowEnvironment, primary_db_url: str, storage: LocalStorage
) -> None:
    with receiver([HANG, 200]) as rx:
        async with (
            stack(mode, temporal_env, primary_db_url, storage, webhook_attempt_timeout_seconds=1.0) as h,
            h.async_http() as http,
        ):
            user = make_user(h.engine)
            endpoint = await add_endpoint(http, user, rx.url())
            await send_test(http, user, endpoint["id"])
            [delivery] = await settled(http, user, endpoint["id"])

            assert delivery["status"] == "DELIVERED"
            first, *_, last = delivery["attempts"]
            assert first["error"] == "No answer within 1 s" and first["statusCode"] is None
            assert 1000 <= first["latencyMs"] < 5000
            assert last["statusCode"] == 200
            assert {r.headers["webhook-id"] for r in rx.received} == {delivery["webhookId"]}


async def test_attempt_timeouts_hold_on_saturated_cores(primary_db_url: str, storage: LocalStorage) -> None:
    """Every core busy: the hanging attempt still ends at its timeout, and the next one delivers."""
    from tests.reliability.processes import busy_cores

    with receiver([HANG, 200]) as rx, busy_cores():
        settings = make_settings(primary_db_url, storage, **{**WEBHOOKS, "webhook_attempt_timeout_seconds": 2.0})
        with LiveServer(settings) as api:
            user = make_user(engine_for(primary_db_url))
            async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as http:
                endpoint = await add_endpoint(http, user, rx.url())
                await send_test(http, user, endpoint["id"])
                [delivery] = await settled(http, user, endpoint["id"], within=120)
    assert delivery["status"] == "DELIVERED"
    assert delivery["attempts"][0]["error"] == "No answer within 2 s"
    assert delivery["attempts"][-1]["statusCode"] == 200


async def test_a_delivery_out_of_time_is_given_up(
    mode: str, temporal_env: WorkflowEnvironment, primary_db_url: str, storage: LocalStorage
) -> None:
    with receiver([500]) as rx:
        async with (
            stack(mode, temporal_env, primary_db_url, storage, webhook_retry_for_seconds=1.5) as h,
            h.async_http() as http,
        ):
            user = make_user(h.engine)
            endpoint = await add_endpoint(http, user, rx.url())
            await send_test(http, user, endpoint["id"])
            [delivery] = await settled(http, user, endpoint["id"])
            shown = (await http.get(f"/api/webhooks/{endpoint['id']}", headers=user.headers)).json()
    assert delivery["status"] == "FAILED"
    assert delivery["error"].startswith("Not delivered within 1.5 s; last error:")
    assert "HTTP 500" in delivery["error"]
    assert len(delivery["attempts"]) >= 2 and all(a["statusCode"] == 500 for a in delivery["attempts"])
    assert len(rx.received) == len(delivery["attempts"])
    assert shown["enabled"] is True and shown["failingSince"] is not None  # failing, not yet for days


# Secrets -------------------------------------------------------------------------------------------------------------


async def test_a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends(
    primary_db_url: str, storage: LocalStorage
) -> None:
    grace = 2.0
    with receiver([200]) as rx:
        settings = make_settings(primary_db_url, storage, **{**WEBHOOKS, "webhook_secret_grace_seconds": grace})
        with LiveServer(settings) as api:
            user = make_user(engine_for(primary_db_url))
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
                endpoint = await add_endpoint(http, user, rx.url())
                old = endpoint["secret"]
                rotated = await http.patch(
                    f"/api/webhooks/{endpoint['id']}", headers=user.headers, json={"rotateSecret": True}
                )
                assert rotated.status_code == 200, rotated.text
                new = rotated.json()["secret"]
                assert new.startswith("whsec_") and new != old
                listed = (await http.get("/api/webhooks", headers=user.headers)).json()["endpoints"]
                assert [e.get("secret") for e in listed] == [None]  # shown once

                await send_test(http, user, endpoint["id"])
                [during] = await arrived(rx, 1)
                assert len(during.headers["webhook-signature"].split(" ")) == 2
                assert verified(old, during) and verified(new, during)

                expires = rotated.json()["previousSecretExpiresAt"]
                assert expires is not None
                await asyncio.sleep(grace + 0.2)  # the grace period is a time: nothing else ends it
                await send_test(http, user, endpoint["id"])
                after = (await arrived(rx, 2))[1]
                assert len(after.headers["webhook-signature"].split(" ")) == 1
                assert verified(new, after)["type"] == "webhook.test"
                with pytest.raises(WebhookVerificationError):
                    verified(old, after)


# Where webhooks may go -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.1.2.3/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://192.168.1.20:8080/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fd00:ec2::254]/", "private"),
        ("http://127.0.0.1:9/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[64:ff9b::a00:1]/", "private"),  # NAT64 of 10.0.0.1
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
        ("http://[::127.0.0.1]/", "loopback"),  # IPv4-compatible
        ("http://[ff02::1]/", "not a public address"),
        ("http://100.100.100.200/", "not a public address"),
        ("http://0.0.0.0/", "not a public address"),
    ],
)
def test_private_loopback_link_local_and_metadata_addresses_are_refused(url: str, why: str) -> None:
    problem = Destinations(allow_http=True).url_problem(url)
    assert problem is not None and why in problem


def test_only_public_https_urls_pass_by_default() -> None:
    rules = Destinations()
    assert rules.url_problem("https://hooks.example.com/album-enhance") is None
    assert rules.url_problem("https://93.184.215.14/hook") is None
    assert rules.url_problem("http://hooks.example.com/") == "The URL must use https"
    assert rules.url_problem("https://user:pw@hooks.example.com/") is not None
    assert rules.url_problem("ftp://hooks.example.com/") is not None
    assert rules.url_problem("https:///nohost") is not None
    assert Destinations.of(LOOPBACK, allow_http=True).url_problem("http://127.0.0.1:9/") is None


async def test_refused_addresses_are_refused_when_saved(primary_db_url: str, storage: LocalStorage) -> None:
    settings = make_settings(primary_db_url, storage, webhook_allow_http=True)
    with LiveServer(settings) as api:
        user = make_user(engine_for(primary_db_url))
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
            refused = await http.post(
                "/api/webhooks", headers=user.headers, json={"url": "http://169.254.169.254/latest/meta-data"}
            )
            assert refused.status_code == 400
            assert "link-local" in refused.json()["error"]
            unknown = await http.post(
                "/api/webhooks", headers=user.headers, json={"url": "https://example.com/", "events": ["batch.done"]}
            )
            assert unknown.status_code == 400 and "batch.done" in unknown.json()["error"]


async def test_a_name_that_resolves_to_loopback_is_refused_at_delivery_when_loopback_is_not_allowed(
    mode: str, temporal_env: WorkflowEnvironment, primary_db_url: str, storage: LocalStorage
) -> None:
    with receiver([200]) as rx:
        async with (
            stack(mode, temporal_env, primary_db_url, storage, webhook_allowed_networks=[]) as h,
            h.async_http() as http,
        ):
            user = make_user(h.engine)
            # A name is not resolved when saved (it could change anyway): it is resolved, and refused, at delivery.
            endpoint = await add_endpoint(http, user, rx.url(host="localhost"))
            await send_test(http, user, endpoint["id"])
            [delivery] = await settled(http, user, endpoint["id"])
    assert delivery["status"] == "FAILED"
    [attempt] = delivery["attempts"]
    assert "loopback address (localhost)" in attempt["error"]
    assert attempt["statusCode"] is None
    assert rx.received == []


async def test_redirects_are_not_followed(primary_db_url: str, storage: LocalStorage) -> None:
    with receiver([302, 200]) as rx:
        settings = make_settings(primary_db_url, storage, **WEBHOOKS)
        with LiveServer(settings) as api:
            user = make_user(engine_for(primary_db_url))
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
                endpoint = await add_endpoint(http, user, rx.url())
                await send_test(http, user, endpoint["id"])
                [delivery] = await settled(http, user, endpoint["id"])
    assert [a["statusCode"] for a in delivery["attempts"]] == [302, 200]
    assert delivery["attempts"][0]["error"].startswith("Redirect to")
    assert [r.path for r in rx.received] == ["/hooks", "/hooks"]


# Failing endpoints ---------------------------------------------------------------------------------------------------


async def test_an_endpoint_failing_too_long_is_disabled_then_re_enabled_and_redelivered(
    primary_db_url: str, storage: LocalStorage
) -> None:
    failing_for = 1.0  # seconds, as days
    with receiver([500]) as rx:
        settings = make_settings(
            primary_db_url, storage, **{**WEBHOOKS, "webhook_disable_after_days": failing_for / 86400}
        )
        with LiveServer(settings) as api:
            user = make_user(engine_for(primary_db_url))
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
                endpoint = await add_endpoint(http, user, rx.url())
                await send_test(http, user, endpoint["id"])
                [failed] = await settled(http, user, endpoint["id"])
                assert failed["status"] == "FAILED" and failed["error"].startswith("Endpoint disabled: failing since")
                assert len(failed["attempts"]) >= 3  # retried for about a second first
                shown = (await http.get(f"/api/webhooks/{endpoint['id']}", headers=user.headers)).json()
                assert shown["enabled"] is False and shown["disabledReason"].startswith("failing since")
                refused = await http.post(
                    f"/api/webhooks/{endpoint['id']}/deliveries/{failed['id']}/redeliver", headers=user.headers
                )
                assert refused.status_code == 400

                rx.script = [200]  # the receiver is fixed
                enabled = await http.patch(
                    f"/api/webhooks/{endpoint['id']}", headers=user.headers, json={"enabled": True}
                )
                assert enabled.json()["enabled"] is True and enabled.json()["failingSince"] is None
                again = await http.post(
                    f"/api/webhooks/{endpoint['id']}/deliveries/{failed['id']}/redeliver", headers=user.headers
                )
                assert again.status_code == 202, again.text
                assert again.json()["webhookId"] == failed["webhookId"]
                ended = await settled(http, user, endpoint["id"], count=2)
    redelivered = next(d for d in ended if d["id"] == again.json()["id"])
    assert redelivered["status"] == "DELIVERED"
    assert rx.received[-1].headers["webhook-id"] == failed["webhookId"]


async def test_someone_elses_endpoint_is_not_found(primary_db_url: str, storage: LocalStorage) -> None:
    with LiveServer(make_settings(primary_db_url, storage, **WEBHOOKS)) as api:
        engine = engine_for(primary_db_url)
        owner, stranger = make_user(engine), make_user(engine)
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
            endpoint = await add_endpoint(http, owner, "http://127.0.0.1:9/hooks")
            for method, path in [
                ("GET", ""),
                ("PATCH", ""),
                ("DELETE", ""),
                ("GET", "/deliveries"),
                ("POST", "/test"),
            ]:
                answer = await http.request(
                    method, f"/api/webhooks/{endpoint['id']}{path}", headers=stranger.headers, json={}
                )
                assert answer.status_code == 404, (method, path, answer.text)
            assert (await http.get("/api/webhooks", headers=stranger.headers)).json() == {"endpoints": []}
            deleted = await http.delete(f"/api/webhooks/{endpoint['id']}", headers=owner.headers)
            assert deleted.status_code == 204
            assert (await http.get(f"/api/webhooks/{endpoint['id']}", headers=owner.headers)).status_code == 404


# callbackUrl ---------------------------------------------------------------------------------------------------------


async def test_a_callback_url_receives_the_batch_event_signed_with_the_callback_secret(
    primary_db_url: str, storage: LocalStorage
) -> None:
    with receiver([200]) as rx, LiveServer(make_settings(primary_db_url, storage, **WEBHOOKS)) as api:
        engine = engine_for(primary_db_url)
        user = make_user(engine, tokens=10)
        album = make_album(engine, user)
        make_image(engine, storage, album)
        enhance = f"/api/albums/{album}/enhance"
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
            body = {"tier": "TIER_1K", "callbackUrl": rx.url(path="/done")}
            unsigned = await http.post(enhance, headers=user.headers, json=body)
            assert unsigned.status_code == 400 and "callback secret" in unsigned.json()["error"]
            created = await http.post("/api/webhooks/callback-secret", headers=user.headers)
            assert created.status_code == 201
            secret = created.json()["secret"]
            private = await http.post(enhance, headers=user.headers, json={**body, "callbackUrl": "http://10.0.0.1/"})
            assert private.status_code == 400 and "private" in private.json()["error"]
            assert (await http.get("/api/me", headers=user.headers)).json()["tokenBalance"] == 10  # nothing charged

            enhanced = await http.post(enhance, headers=user.headers, json=body)
            assert enhanced.status_code == 200, enhanced.text
            assert "callbackUrl" not in enhanced.json()  # the answer is the contract's, callback or not
            batch_id = enhanced.json()["batchId"]
            [request] = await arrived(rx, 1)
            payload = verified(secret, request)
            assert request.path == "/done"
            assert payload["type"] == "batch.completed" and payload["data"]["batchId"] == batch_id
            assert payload["data"]["completed"] == 1 and payload["data"]["tokensCharged"] == 2
            listed = await http.get("/api/webhooks", headers=user.headers, params={"batchId": batch_id})
            [callback] = listed.json()["endpoints"]
            assert callback["url"] == rx.url(path="/done") and callback["events"] == [
                "batch.completed",
                "batch.cancelled",
                "batch.failed",
            ]
            [delivery] = await settled(http, user, callback["id"])
            assert delivery["status"] == "DELIVERED" and delivery["webhookId"] == request.headers["webhook-id"]
            assert (await http.get("/api/webhooks", headers=user.headers)).json() == {"endpoints": []}
