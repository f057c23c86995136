"""Hostile callers: every /api route against no key, wrong keys and another user's resources, over real HTTP.

The matrix is checked against the application's own route list and OpenAPI paths, so a new route without a case
fails here. Every refusal must be the documented status with a bare `{"error": ...}` body that names nothing of
the victim and carries no stack trace, and the victim's balance, ledger, jobs, batches, images and stored files
must be exactly as they were.
"""

import hashlib
import importlib
import json
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from sqlmodel import Session, col, select

import api.routes
from api.deps import AUTH_HINT, CSRF_HEADER, SESSION_COOKIE
from api.main import api_router
from core.webhook_rules import Destinations
from db.models import (
    Album,
    ApiKey,
    Batch,
    DeliveryStatus,
    EnhancementJob,
    IdempotencyRecord,
    Image,
    Tier,
    TokenTransaction,
    User,
    UserSession,
    WebhookDelivery,
    WebhookEndpoint,
)
from db.session import session_scope
from services import webhooks
from services.accounts import Client, csrf_token_of, start_session
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings, wait_until
from tests.db_helpers import assert_balance_matches_ledger, batch_row, end_pending_deliveries
from tests.factories import UserWithKey, jpeg_bytes, make_album, make_image, make_pending_job, make_user

NOT_OWNER = "You do not own this album"
NO_WEBHOOK = "Webhook endpoint not found"
VICTIM_HOOK = "https://hooks.example.com/victim-secret-hook"
TRACE_MARKERS = ("Traceback", 'File "', ".py", "sqlalchemy", "psycopg", "sqlite3")


@dataclass(frozen=True)
class Route:
    """How to call one route, and what another user's resource in its path must answer."""

    method: str
    path: str
    foreign: tuple[int, str] | None = None  # (status, error) for another user's resource; None: no resource in path
    json: dict[str, Any] | None = None
    upload: bool = False
    owner_conflict: bool = False  # the owner may get 409: the fixture's batch is not in a state the command fits
    public: bool = False  # needs no credentials (signing up and in)
    self_only: bool = False  # acts on the caller's own account or session, never on a resource named in the path

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("GET", "/api/me"),
    Route("GET", "/api/tokens/transactions"),
    Route("GET", "/api/albums"),
    Route("POST", "/api/albums", json={"name": "Intruder's album"}),
    Route("GET", "/api/albums/{albumId}", foreign=(403, NOT_OWNER)),
    Route("POST", "/api/albums/{albumId}/images", foreign=(403, NOT_OWNER), upload=True),
    Route("POST", "/api/albums/{albumId}/enhance", foreign=(403, NOT_OWNER), json={"tier": "TIER_1K"}),
    Route("POST", "/api/albums/{albumId}/enhance/quote", foreign=(403, NOT_OWNER), json={"tier": "TIER_1K"}),
    Route("GET", "/api/images/{imageId}/original", foreign=(404, "Image not found")),
    Route("GET", "/api/jobs/{jobId}", foreign=(404, "Job not found")),
    Route("GET", "/api/jobs/{jobId}/result", foreign=(404, "Job not found")),
    Route("GET", "/api/batches/{batchId}", foreign=(404, "Batch not found")),
    Route("POST", "/api/batches/{batchId}/cancel", foreign=(404, "Batch not found")),
    Route("POST", "/api/batches/{batchId}/pause", foreign=(404, "Batch not found"), owner_conflict=True),
    Route("POST", "/api/batches/{batchId}/resume", foreign=(404, "Batch not found"), owner_conflict=True),
    # After the cancel (and pause/resume): the owner's stream of the (now cancelled) batch ends at once.
    Route("GET", "/api/batches/{batchId}/events", foreign=(404, "Batch not found")),
    Route("GET", "/api/images/{imageId}/thumbnail", foreign=(404, "Image not found")),
    Route("GET", "/api/albums/{albumId}/results.zip", foreign=(403, NOT_OWNER)),
    Route("GET", "/api/account"),
    Route("GET", "/api/account/sessions"),
    Route("GET", "/api/account/keys"),
    Route("POST", "/api/account/keys", json={"name": "intruder's key"}),
    Route("GET", "/api/account/export"),
    Route("DELETE", "/api/account/sessions/{sessionId}", foreign=(404, "Session not found")),
    Route("POST", "/api/auth/signout", self_only=True),
    Route("POST", "/api/account/sessions/revoke-all", self_only=True),
    Route("POST", "/api/account/password", json={"currentPassword": "x", "newPassword": "y"}, self_only=True),
    Route("POST", "/api/account/delete", json={"password": "not the password"}, self_only=True),
    Route("POST", "/api/auth/signup", public=True),
    Route("POST", "/api/auth/verify", public=True),
    Route("POST", "/api/auth/signin", public=True),
    Route("POST", "/api/auth/forgot", public=True),
    Route("POST", "/api/auth/reset", public=True),
    Route("GET", "/api/webhooks"),
    Route("POST", "/api/webhooks", json={"url": "https://hooks.example.com/intruder"}),
    Route("POST", "/api/webhooks/callback-secret"),
    Route("GET", "/api/webhooks/{webhookId}", foreign=(404, NO_WEBHOOK)),
    Route("PATCH", "/api/webhooks/{webhookId}", foreign=(404, NO_WEBHOOK), json={"rotateSecret": True}),
    Route("GET", "/api/webhooks/{webhookId}/deliveries", foreign=(404, NO_WEBHOOK)),
    Route("POST", "/api/webhooks/{webhookId}/test", foreign=(404, NO_WEBHOOK)),
    Route("POST", "/api/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", foreign=(404, NO_WEBHOOK)),
    # Last: the owner's deletes remove what the cases above use (the key is the one the owner calls with).
    Route("DELETE", "/api/images/{imageId}", foreign=(404, "Image not found")),
    Route("DELETE", "/api/albums/{albumId}", foreign=(403, NOT_OWNER)),
    Route("DELETE", "/api/webhooks/{webhookId}", foreign=(404, NO_WEBHOOK)),
    Route("DELETE", "/api/account/keys/{keyId}", foreign=(404, "Key not found")),
]


@dataclass
class Victim:
    """A user whose every kind of resource exists, with a job whose result is stored and a batch still cancellable."""

    user: UserWithKey
    ids: dict[str, str]
    secrets: list[str] = field(default_factory=list)
    csrf_token: str = ""

    def fill(self, path: str, ids: dict[str, str] | None = None) -> str:
        return path.format(**(ids or self.ids))


def wait_for_batch(h: Harness, batch_id: str) -> None:
    wait_until(lambda: batch_row(h.engine, batch_id).status == "COMPLETED")


def make_victim(h: Harness) -> Victim:
    user = make_user(h.engine, tokens=500)
    album = make_album(h.engine, user, name="Victim's private album")
    uploaded = h.http.post(
        f"/api/albums/{album}/images",
        headers=user.headers,
        files=[("files", ("victim-secret-name.jpg", jpeg_bytes(), "image/jpeg"))],
    )
    assert uploaded.status_code == 201, uploaded.text
    image = uploaded.json()["images"][0]["id"]
    enhanced = h.http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"})
    assert enhanced.status_code == 200, enhanced.text
    done_batch, job = enhanced.json()["batchId"], enhanced.json()["jobs"][0]["enhancementJobId"]
    wait_for_batch(h, done_batch)
    # A charged, unstarted batch: a cancel that got through would visibly change it.
    pending_image = make_image(h.engine, h.storage, album, sort_order=1)
    pending_job = make_pending_job(h.engine, user, album, pending_image, Tier.TIER_2K)
    with Session(h.engine) as session:
        pending_batch = session.get_one(EnhancementJob, pending_job).batch_id
    with session_scope(h.engine) as session:
        key_id = session.exec(select(ApiKey.id).where(col(ApiKey.user_id) == user.id)).one()
        session_token, victim_session = start_session(session, h.settings, user.id, Client("192.0.2.1", "victim"))
        hook = webhooks.create_endpoint(
            session, user.id, webhooks.EndpointSpec(VICTIM_HOOK, ("batch.completed",)), Destinations()
        )
        delivery = webhooks.send_test(session, hook)
        delivery.status = DeliveryStatus.FAILED  # a row nobody starts, and the reconciler leaves alone
        session.add(delivery)
    ids = {
        "albumId": album,
        "imageId": image,
        "jobId": job,
        "batchId": pending_batch,
        "sessionId": victim_session.id,
        "keyId": key_id,
        "webhookId": hook.id,
        "deliveryId": delivery.id,
    }
    names = ["victim-secret-name", "Victim's private album", VICTIM_HOOK, hook.secret]
    secrets = [user.id, user.email, user.api_key, session_token, *names, done_batch, pending_image, *ids.values()]
    return Victim(user, ids, secrets, csrf_token_of(session_token))


def snapshot(h: Harness, user_id: str) -> dict[str, Any]:
    """Everything of a user an intruder could change."""
    with Session(h.engine) as session:
        albums = session.exec(select(Album).where(col(Album.owner_id) == user_id)).all()
        album_ids = [album.id for album in albums]
        return {
            "balance": session.get_one(User, user_id).token_balance,
            "ledger": [
                (t.id, t.amount, t.type, t.reference)
                for t in session.exec(select(TokenTransaction).where(col(TokenTransaction.user_id) == user_id))
            ],
            "albums": sorted((a.id, a.name, a.description) for a in albums),
            "images": sorted(
                (i.id, i.original_key, i.original_filename)
                for i in session.exec(select(Image).where(col(Image.album_id).in_(album_ids)))
            ),
            "jobs": sorted(
                (j.id, j.status, j.tokens_refunded, j.enhanced_key)
                for j in session.exec(select(EnhancementJob).where(col(EnhancementJob.user_id) == user_id))
            ),
            "batches": sorted(
                (b.id, b.status, b.cancel_requested)
                for b in session.exec(select(Batch).where(col(Batch.user_id) == user_id))
            ),
            "keys": sorted(k.id for k in session.exec(select(ApiKey).where(col(ApiKey.user_id) == user_id))),
            "sessions": sorted(
                s.id for s in session.exec(select(UserSession).where(col(UserSession.user_id) == user_id))
            ),
            "idempotency": sorted(
                r.key for r in session.exec(select(IdempotencyRecord).where(col(IdempotencyRecord.user_id) == user_id))
            ),
            "webhooks": sorted(
                (w.id, w.url, w.events, w.secret, w.enabled)
                for w in session.exec(select(WebhookEndpoint).where(col(WebhookEndpoint.user_id) == user_id))
            ),
            "deliveries": sorted(
                (d.id, d.status, d.attempts)
                for d in session.exec(
                    select(WebhookDelivery)
                    .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
                    .where(col(WebhookEndpoint.user_id) == user_id)
                )
            ),
            # The whole store: files are named by server keys, not by owner.
            "files": sorted(str(p.relative_to(h.storage.root)) for p in h.storage.root.rglob("*") if p.is_file()),
        }


def send(h: Harness, route: Route, path: str, headers: dict[str, str]) -> httpx.Response:
    files = [("files", ("../../../escape.jpg", jpeg_bytes(), "image/jpeg"))] if route.upload else None
    return h.http.request(route.method, path, headers=headers, json=route.json, files=files)


def problems_with_refusal(
    response: httpx.Response, status: int, error: str, secrets: list[str], documented: set[str]
) -> list[str]:
    """Why a refusal is not the expected bare, documented, leak-free JSON error (empty when it is)."""
    problems = []
    if response.status_code != status:
        problems.append(f"status {response.status_code}, expected {status}")
    if str(response.status_code) not in documented:
        problems.append(f"status {response.status_code} is not documented (documented: {sorted(documented)})")
    if not response.headers.get("content-type", "").startswith("application/json"):
        problems.append(f"content type {response.headers.get('content-type')!r}")
    else:
        body = response.json()
        expected = {"error": error, "hint": AUTH_HINT} if status == 401 else {"error": error}
        if body != expected:
            problems.append(f"body {body!r}, expected {expected!r}")
    if status == 401 and response.headers.get("www-authenticate") != "Bearer":
        problems.append(f"WWW-Authenticate {response.headers.get('www-authenticate')!r}")
    problems += leaks(response, secrets)
    return problems


def leaks(response: httpx.Response, secrets: list[str]) -> list[str]:
    text = response.text
    found = [f"body names {secret!r}" for secret in secrets if secret in text]
    found += [f"body carries {marker!r}" for marker in TRACE_MARKERS if marker in text]
    return found


def wrong_keys(victim: Victim) -> dict[str, dict[str, str]]:
    """Credentials that must all be refused."""
    return {
        "no key": {},
        "unknown key": {"Authorization": "Bearer ae_not-a-real-key"},
        "bearer without a key": {"Authorization": "Bearer"},
        "stored hash as key": {"Authorization": f"Bearer {hashlib.sha256(victim.user.api_key.encode()).hexdigest()}"},
        "right key, Basic scheme": {"Authorization": f"Basic {victim.user.api_key}"},
        "right key, no scheme": {"Authorization": victim.user.api_key},
        "key in another header": {"X-API-Key": victim.user.api_key},
        "unknown session cookie": {"Cookie": f"{SESSION_COOKIE}=not-a-session"},
        "the session's CSRF token alone": {"X-CSRF-Token": victim.csrf_token},
    }


def declared_api_operations() -> set[str]:
    """Every operation of every router in the api.routes package, as `METHOD /api/path`."""
    operations = set()
    for info in pkgutil.iter_modules(api.routes.__path__):
        module = importlib.import_module(f"{api.routes.__name__}.{info.name}")
        for router in (value for value in vars(module).values() if isinstance(value, APIRouter)):
            for route in router.routes:
                if isinstance(route, APIRoute) and route.methods:
                    operations |= {f"{method} {api_router.prefix}{route.path}" for method in route.methods}
    return operations


def api_operations(h: Harness) -> tuple[set[str], dict[str, set[str]]]:
    """The /api operations (from the route modules) and their documented status codes (the live OpenAPI)."""
    from_routes = declared_api_operations()
    spec = h.http.get("/openapi.json").json()
    documented = {
        f"{method.upper()} {path}": set(operation["responses"])
        for path, operations in spec["paths"].items()
        if path.startswith("/api/")
        for method, operation in operations.items()
    }
    assert from_routes == set(documented), "the route modules and the served OpenAPI paths disagree"
    return from_routes, documented


def test_the_matrix_covers_every_api_route(direct_harness: Harness) -> None:
    operations, _ = api_operations(direct_harness)
    assert len(ROUTES) == len({route.key for route in ROUTES})
    missing = operations - {route.key for route in ROUTES}
    assert not missing, f"routes without an authorization case: {sorted(missing)}"
    assert {route.key for route in ROUTES} <= operations, "cases for routes that no longer exist"


def test_every_route_refuses_missing_and_wrong_keys(direct_harness: Harness) -> None:
    h = direct_harness
    victim = make_victim(h)
    _, documented = api_operations(h)
    before = snapshot(h, victim.user.id)
    unknown_ids = {
        "albumId": "no-such-album",
        "imageId": "no-such-image",
        "jobId": "no-such-job",
        "batchId": "nope",
        "sessionId": "no-such-session",
        "keyId": "no-such-key",
        "webhookId": "no-such-hook",
        "deliveryId": "no-such-delivery",
    }
    failures = []
    for route in (route for route in ROUTES if not route.public):
        for target in (victim.ids, unknown_ids):
            path = victim.fill(route.path, target)
            for name, headers in wrong_keys(victim).items():
                response = send(h, route, path, headers)
                for problem in problems_with_refusal(
                    response, 401, "Unauthorized", victim.secrets, documented[route.key]
                ):
                    failures.append(f"{route.key} with {name} on {path}: {problem}")
    assert not failures, "\n".join(failures)
    assert snapshot(h, victim.user.id) == before


def session_headers(h: Harness, user_id: str) -> dict[str, str]:
    """A signed-in browser's credentials: the session cookie and, for changes, its CSRF token."""
    with session_scope(h.engine) as session:
        token, _ = start_session(session, h.settings, user_id, Client("192.0.2.2", "intruder"))
    return {"Cookie": f"{SESSION_COOKIE}={token}", CSRF_HEADER: csrf_token_of(token)}


@pytest.mark.parametrize("credential", ["api key", "session"])
def test_another_users_resources_are_refused_and_left_untouched(direct_harness: Harness, credential: str) -> None:
    h = direct_harness
    victim = make_victim(h)
    intruder = make_user(h.engine, tokens=500)
    intruder_headers = intruder.headers if credential == "api key" else session_headers(h, intruder.id)
    intruder_album = make_album(h.engine, intruder)
    make_image(h.engine, h.storage, intruder_album)
    _, documented = api_operations(h)
    victim_before, intruder_before = snapshot(h, victim.user.id), snapshot(h, intruder.id)

    failures = []
    for route in (route for route in ROUTES if not (route.public or route.self_only)):
        path = victim.fill(route.path)
        response = send(h, route, path, intruder_headers)
        if route.foreign is None:
            # No resource in the path: the intruder is served their own data, and none of the victim's.
            if not 200 <= response.status_code < 300:
                failures.append(f"{route.key}: status {response.status_code} for the intruder's own data")
            failures += [f"{route.key}: {problem}" for problem in leaks(response, victim.secrets)]
            continue
        status, error = route.foreign
        for problem in problems_with_refusal(response, status, error, victim.secrets, documented[route.key]):
            failures.append(f"{route.key} on the victim's resource: {problem}")
        if status == 404:
            # No existence oracle: someone else's id answers exactly like an id that does not exist.
            unknown = send(h, route, route.path.replace("{", "").replace("}", "-does-not-exist"), intruder_headers)
            if (unknown.status_code, unknown.content) != (response.status_code, response.content):
                failures.append(
                    f"{route.key}: foreign id {response.content[:200]!r}, unknown {unknown.content[:200]!r}"
                )
    assert not failures, "\n".join(failures)

    assert snapshot(h, victim.user.id) == victim_before
    intruder_after = snapshot(h, intruder.id)
    created = [album for album in intruder_after["albums"] if album not in intruder_before["albums"]]
    assert [name for _, name, _ in created] == ["Intruder's album"]  # POST /api/albums made the intruder's own
    assert len(intruder_after["keys"]) == len(intruder_before["keys"]) + 1  # and POST /api/account/keys a key
    assert [url for _, url, *_ in intruder_after["webhooks"]] == ["https://hooks.example.com/intruder"]  # likewise
    changed = ("albums", "files", "keys", "webhooks")
    assert {k: v for k, v in intruder_after.items() if k not in changed} == {
        k: v for k, v in intruder_before.items() if k not in changed
    }
    assert intruder_after["files"] == victim_before["files"]  # no refused upload stored anything
    assert_balance_matches_ledger(h.engine, victim.user.id)
    assert_balance_matches_ledger(h.engine, intruder.id)

    # The same requests by the owner succeed: the refusals above were about ownership, not missing resources.
    for route in (route for route in ROUTES if not (route.public or route.self_only)):
        response = send(h, route, victim.fill(route.path), victim.user.headers)
        allowed = 200 <= response.status_code < 300 or (route.owner_conflict and response.status_code == 409)
        assert allowed, f"{route.key} for the owner: {response.status_code} {response.text}"
        if route.key == "POST /api/albums/{albumId}/enhance":
            wait_for_batch(h, response.json()["batchId"])
    end_pending_deliveries(h.engine)  # the owner's test send has no receiver
    # The owner's upload was named "../../../escape.jpg": the name is kept for display, never used in a path.
    stored = [p for p in h.storage.root.rglob("*") if p.is_file()]
    assert stored and not any("escape" in str(p) for p in stored)
    assert not (h.storage.root.parent / "escape.jpg").exists()


# --- error bodies: clean JSON, never a stack trace ------------------------------------------------------------


def test_a_deleted_original_or_result_is_a_clean_404(direct_harness: Harness) -> None:
    h = direct_harness
    victim = make_victim(h)
    headers = victim.user.headers
    with Session(h.engine) as session:
        image = session.get_one(Image, victim.ids["imageId"])
        job = session.get_one(EnhancementJob, victim.ids["jobId"])
    assert h.http.get(f"/api/images/{image.id}/original", headers=headers).status_code == 200
    assert h.http.get(f"/api/jobs/{job.id}/result", headers=headers).status_code == 200
    assert job.enhanced_key is not None
    h.storage.delete(image.original_key)
    h.storage.delete(job.enhanced_key)
    for path, error in [
        (f"/api/images/{image.id}/original", "Original image not found in storage"),
        (f"/api/jobs/{job.id}/result", "Enhanced image not found in storage"),
    ]:
        response = h.http.get(path, headers=headers)
        assert response.status_code == 404
        assert response.json() == {"error": error}
        assert not leaks(response, [image.original_key, job.enhanced_key, str(h.storage.root)])


def test_a_storage_failure_is_a_bare_500(db_url: str, tmp_path: Path) -> None:
    """A real unexpected error (the storage folder is unusable): the answer says nothing about why."""
    storage = LocalStorage(tmp_path / "storage")
    storage.root.mkdir()
    (storage.root / "originals").write_text("a file where the originals folder should be")
    engine = engine_for(db_url)
    user = make_user(engine)
    album = make_album(engine, user)
    with LiveServer(make_settings(db_url, storage)) as api:
        response = api.http.post(
            f"/api/albums/{album}/images",
            headers=user.headers,
            files=[("files", ("photo.jpg", jpeg_bytes(), "image/jpeg"))],
        )
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": "Internal server error"}
        assert not leaks(response, [str(tmp_path), "originals", "NotADirectoryError", "FileExistsError", "Errno"])
        # Nothing was half-stored: the album is still empty, and the API keeps serving (on a new connection:
        # the server drops the one that saw an unexpected error).
        with httpx.Client(base_url=api.base_url, timeout=30) as fresh:
            detail = fresh.get(f"/api/albums/{album}", headers=user.headers)
        assert detail.status_code == 200 and detail.json()["images"] == []
    assert sorted(p.name for p in storage.root.iterdir()) == ["deployment", "originals"]  # the marker, no upload


@pytest.mark.parametrize(
    ("method", "path", "content", "status"),
    [
        ("GET", "/api/no-such-route", None, 404),
        ("DELETE", "/api/me", None, 405),
        ("POST", "/api/albums", b'{"name": ', 400),
        ("POST", "/api/albums", b'{"name": "x", "ownerId": "someone-else"}', 400),
        ("POST", "/api/albums/x/enhance", b"\xff\xfe not json", 400),
        ("GET", "/api/tokens/transactions?limit=-1&offset=abc", None, 400),
    ],
)
def test_framework_errors_are_json_without_traces(
    direct_harness: Harness, method: str, path: str, content: bytes | None, status: int
) -> None:
    user = make_user(direct_harness.engine)
    headers = {**user.headers, "Content-Type": "application/json"}
    response = direct_harness.http.request(method, path, headers=headers, content=content)
    assert response.status_code == status
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"error", "details"}
    assert not leaks(response, [user.id, user.email])
    json.dumps(body)  # plain JSON values only
