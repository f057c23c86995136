"""Hostile input: the whole API fuzzed from its own OpenAPI schema (schemathesis), over real HTTP, with a valid key.

Every operation gets positive and negative cases (negative ones include a missing or mangled API key). Path ids
are sometimes swapped for real ids of the caller's album, images, jobs and batches, so the fuzzer gets past the
404s into the handlers. No answer may be a 5xx, and every answer must be documented: status code, content type
and body schema. The number of requests sent is counted by a hook, printed with the status codes per operation,
and recorded as the test's `fuzz_requests` property (in JUnit XML reports).
"""

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode, HookContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.webhook_rules import Destinations
from db.models import DeliveryStatus, Tier
from db.session import session_scope
from services import webhooks
from services.accounts import Client, start_session
from services.batches import mark_started
from services.users import create_key
from tests.conftest import Harness, wait_until
from tests.db_helpers import assert_balance_matches_ledger, batch_row, end_pending_deliveries
from tests.factories import jpeg_bytes, make_album, make_image, make_images, make_pending_job, make_user
from tests.reliability.test_authorization import declared_api_operations

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_MODE = 25  # per operation and generation mode, so about 50 requests per operation
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Operations with nothing that can be made invalid (no parameters, body or key) have no negative cases.
NOTHING_TO_NEGATE = {"GET /healthz", "GET /readyz"}
# Operations whose success needs what no fuzzer can guess (a mailed token, a password, the account's own email,
# a session instead of a key): they must still answer every case cleanly, with a documented error.
SUCCESS_NEEDS_A_SECRET = {
    "POST /api/auth/verify",
    "POST /api/auth/reset",
    "POST /api/auth/signin",
    "POST /api/auth/signout",
    "POST /api/account/delete",
    "POST /api/account/password",
}


def label(operation: APIOperation) -> str:
    return f"{operation.method.upper()} {operation.path}"


@dataclass
class Owned:
    """The fuzzing user's key and real ids, by path parameter name (uploads get an album of their own, so the
    enhance album stays under the batch size limit; deletes get their own, so the other operations keep theirs)."""

    user_id: str
    api_key: str
    ids: dict[str, list[str]]
    upload_album: str
    running_batch: str
    disposable: dict[str, list[str]]
    finished_batch: str
    patched_webhook: str = ""  # PATCH may disable it: the test sends and redeliveries keep an enabled one

    def real_ids(self, operation: APIOperation | None, name: str) -> list[str]:
        if name == "webhookId" and operation is not None and operation.method.upper() == "PATCH":
            return [self.patched_webhook]
        return self._real_ids(operation, name)

    def _real_ids(self, operation: APIOperation | None, name: str) -> list[str]:
        if operation is not None and operation.method.upper() == "DELETE":
            return self.disposable.get(name, [])
        if name == "albumId" and operation is not None and operation.path.endswith("/images"):
            return [self.upload_album]
        if name == "batchId" and operation is not None and operation.path.endswith(("/pause", "/resume")):
            return [self.running_batch, *self.ids.get(name, [])]
        if name == "batchId" and operation is not None and operation.path.endswith("/events"):
            return [self.finished_batch]  # the stream of a batch that is over ends at once
        return self.ids.get(name, [])


@dataclass
class Tally:
    """Requests sent, and the status codes answered, per operation."""

    sent: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def report(self, backend: str) -> str:
        lines = [f"fuzzer ({backend}): {self.total} requests"]
        for name, count in sorted(self.sent.items()):
            codes = ", ".join(f"{code}x{n}" for code, n in sorted(self.statuses[name].items()))
            lines.append(f"  {count:4d}  {name:40s} {codes}")
        return "\n".join(lines)


def seed_owned_resources(h: Harness) -> Owned:
    """A rich user with an album, an uploaded image, a completed job (its result stored), and a charged batch."""
    user = make_user(h.engine, tokens=1_000_000)
    album = make_album(h.engine, user)
    uploaded = h.http.post(
        f"/api/albums/{album}/images", headers=user.headers, files=[("files", ("x.jpg", jpeg_bytes(), "image/jpeg"))]
    )
    assert uploaded.status_code == 201, uploaded.text
    image = uploaded.json()["images"][0]["id"]
    enhanced = h.http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"})
    assert enhanced.status_code == 200, enhanced.text
    done_batch = enhanced.json()["batchId"]
    done_job = enhanced.json()["jobs"][0]["enhancementJobId"]
    wait_until(lambda: batch_row(h.engine, done_batch).status == "COMPLETED")
    # A batch charged but never started (as a crash right after the charge leaves it): cancelling it is a 202.
    other_image = make_image(h.engine, h.storage, album, sort_order=1)
    pending_job = make_pending_job(h.engine, user, album, other_image, Tier.TIER_2K)
    pending_batch = h.http.get(f"/api/jobs/{pending_job}", headers=user.headers).json()["batchId"]
    # A batch running in another API process (only its row is here), kept out of the cancel's ids: pause and
    # resume reach their success path on it.
    running_image = make_image(h.engine, h.storage, album, sort_order=2)
    running_job = make_pending_job(h.engine, user, album, running_image, Tier.TIER_2K)
    running_batch = h.http.get(f"/api/jobs/{running_job}", headers=user.headers).json()["batchId"]
    with session_scope(h.engine) as session:
        mark_started(session, running_batch)
    with session_scope(h.engine) as session:
        _, spare_key = create_key(session, user.id, "spare")
        _, spare_session = start_session(session, h.settings, user.id, Client("192.0.2.9", "fuzzer"))
    # Separate albums: deleting the album must not take the images meant for the image deletes with it.
    album_to_delete, images_to_delete = make_album(h.engine, user, "To delete"), make_album(h.engine, user, "Trim")
    # Webhook endpoints (never delivered to: their deliveries are rows nobody starts), one to delete, one to patch.
    with session_scope(h.engine) as session:
        spec = webhooks.EndpointSpec("https://hooks.example.com/album-enhance", webhooks.ALL_EVENTS)
        hooks = [webhooks.create_endpoint(session, user.id, spec, Destinations()) for _ in range(3)]
        delivery = webhooks.send_test(session, hooks[0])
        delivery.status = DeliveryStatus.FAILED  # a row nobody starts, and the reconciler leaves alone
        session.add(delivery)
    return Owned(
        user.id,
        user.api_key,
        {
            "albumId": [album],
            "imageId": [image, other_image],
            "jobId": [done_job, pending_job],
            "batchId": [pending_batch, done_batch],
            "webhookId": [hooks[0].id],
            "deliveryId": [delivery.id],
        },
        upload_album=make_album(h.engine, user, "Uploads"),
        running_batch=running_batch,
        finished_batch=done_batch,
        disposable={
            "albumId": [album_to_delete],
            "imageId": make_images(h.engine, h.storage, images_to_delete, 3),
            "keyId": [spare_key.id],  # not the key the fuzzer calls with
            "sessionId": [spare_session.id],
            "webhookId": [hooks[1].id],
        },
        patched_webhook=hooks[2].id,
    )


def load_schema(h: Harness, owned: Owned, tally: Tally) -> Any:
    """The live server's schema, authenticated, with hooks that sometimes use real ids and count every request."""
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"HTTPBearer": {"bearer": owned.api_key}}}})
    schema = schemathesis.openapi.from_url(f"{h.api.base_url}/openapi.json", config=config)

    @schema.hook
    def flatmap_path_parameters(context: HookContext, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        if not path_parameters:
            return st.just(path_parameters)
        # Real ids first: Hypothesis leans towards the first options, and past the 404s is where bugs live.
        options = [
            {**path_parameters, name: real}
            for name in path_parameters
            for real in owned.real_ids(context.operation, name)
        ]
        if len(path_parameters) > 1:  # every id real at once (a webhook's delivery: both must be the caller's)
            every = {name: owned.real_ids(context.operation, name)[:1] for name in path_parameters}
            if all(every.values()):
                options.insert(0, {name: ids[0] for name, ids in every.items()})
        return st.sampled_from([*options, path_parameters])

    @schema.hook
    def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
        # A real photo now and then, so uploads also reach their success path.
        if context.operation is not None and context.operation.path.endswith("/images"):
            return st.sampled_from([{"files": [jpeg_bytes(40, 30)]}, body])
        # A well-formed sign-up now and then (random text is rarely an email with an acceptable password).
        if context.operation is not None and context.operation.path.endswith("/auth/signup"):
            return st.sampled_from([{"email": "fuzz@example.com", "password": "a fine long passphrase"}, body])
        if context.operation is not None and label(context.operation) == "POST /api/webhooks":
            return st.sampled_from([{"url": "https://hooks.example.com/new"}, body])
        return st.just(body)

    @schema.hook
    def after_call(_: HookContext, case: Case, response: Response) -> None:
        tally.sent[label(case.operation)] += 1
        tally.statuses[label(case.operation)][response.status_code] += 1

    return schema


def fuzz_operation(operation: APIOperation, base_url: str, mode: GenerationMode) -> None:
    """Send the operation's generated cases and validate every response (raises on the first failure)."""
    with requests.Session() as session:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_MODE,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        def run(case: Case) -> None:
            response = case.call(base_url=base_url, session=session, timeout=30)
            case.validate_response(response, checks=CHECKS)

        run()


def test_fuzz_the_whole_api_from_its_openapi_schema(
    direct_harness: Harness, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None]
) -> None:
    h = direct_harness
    owned = seed_owned_resources(h)
    tally = Tally()
    schema = load_schema(h, owned, tally)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {label(op) for op in operations} >= declared_api_operations()

    failures: list[str] = []
    for operation in operations:
        for mode in MODES:
            if mode is GenerationMode.NEGATIVE and label(operation) in NOTHING_TO_NEGATE:
                continue
            try:
                fuzz_operation(operation, h.api.base_url, mode)
            except Unsatisfiable as exc:
                failures.append(f"{label(operation)} [{mode.value}]: no cases could be generated: {exc}")
            except (Exception, BaseExceptionGroup) as exc:  # every failing operation is reported, then the test fails
                failures.append(f"{label(operation)} [{mode.value}]:\n{exc}")

    record_property("fuzz_requests", tally.total)
    with capsys.disabled():
        print("\n" + tally.report(h.settings.database_url.split(":", 1)[0].split("+", 1)[0]))
    assert not failures, "\n\n".join(failures)
    assert all(tally.sent[label(op)] > 0 for op in operations)
    # Real ids took the fuzzer past the 404s: every operation with a success path got there at least once.
    for operation in (op for op in operations if label(op) not in SUCCESS_NEEDS_A_SECRET):
        assert any(200 <= code < 300 for code in tally.statuses[label(operation)]), label(operation)
    assert_balance_matches_ledger(h.engine, owned.user_id)
    end_pending_deliveries(h.engine)  # the test sends' receiver does not exist


# --- what the fuzzer found, pinned down -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/albums/%00"),
        ("POST", "/api/albums/a%00b/images"),
        ("POST", "/api/albums/%00/enhance"),
        ("GET", "/api/images/%00/original"),
        ("GET", "/api/jobs/%00"),
        ("GET", "/api/jobs/%00/result"),
        ("GET", "/api/batches/%00"),
        ("POST", "/api/batches/%00/cancel"),
    ],
)
def test_a_nul_byte_in_an_id_is_a_404(direct_harness: Harness, method: str, path: str) -> None:
    """PostgreSQL refuses NUL in text parameters; such an id must not turn into a 500."""
    user = make_user(direct_harness.engine)
    body = {"tier": "TIER_1K"} if path.endswith("/enhance") else None
    files = [("files", ("x.jpg", jpeg_bytes(), "image/jpeg"))] if path.endswith("/images") else None
    response = direct_harness.http.request(method, path, headers=user.headers, json=body, files=files)
    assert response.status_code == 404
    assert response.json()["error"].endswith("not found")


@pytest.mark.parametrize("field_name", ["name", "description"])
def test_a_nul_byte_in_an_album_field_is_a_400(direct_harness: Harness, field_name: str) -> None:
    user = make_user(direct_harness.engine)
    body = {"name": "Holidays", field_name: "Beach\x00days"}
    response = direct_harness.http.post("/api/albums", headers=user.headers, json=body)
    assert response.status_code == 400
    assert field_name in response.json()["error"]
    albums = direct_harness.http.get("/api/albums", headers=user.headers).json()["albums"]
    assert albums == []
