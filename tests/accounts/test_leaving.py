"""Leaving with one's data: the export zip, and account deletion (refused while a batch runs; afterwards no object
of the person in storage, every other balance still the sum of its ledger, the service's totals still adding up)."""

import csv
import io
import zipfile

from sqlalchemy import func
from sqlmodel import Session, col, select

from db.models import (
    ApiKey,
    Batch,
    EnhancementJob,
    Image,
    TokenTransaction,
    User,
    UserSession,
    WebhookCallbackSecret,
    WebhookEndpoint,
)
from tests.accounts.conftest import Person, make_person, signed_in
from tests.accounts.helpers import CookieClient
from tests.conftest import Harness, wait_until
from tests.db_helpers import assert_balance_matches_ledger, batch_row
from tests.factories import make_image, make_pending_job, photo_bytes

PHOTOS = ("rocket.jpg", "coffee.png")


def enhanced_album(h: Harness, browser: CookieClient, name: str) -> tuple[str, list[str], list[str]]:
    """An album of two photos, enhanced at 1K to the end: (album id, image ids, job ids)."""
    album = browser.post("/api/albums", json={"name": name}).json()["id"]
    files = [("files", (photo, photo_bytes(photo), "image/jpeg")) for photo in PHOTOS]
    images = [image["id"] for image in browser.post(f"/api/albums/{album}/images", files=files).json()["images"]]
    enhanced = browser.post(f"/api/albums/{album}/enhance", json={"tier": "TIER_1K"}).json()
    wait_until(lambda: batch_row(h.engine, enhanced["batchId"]).status == "COMPLETED")
    for image in images:  # thumbnails are made on first view: make them, so their removal is checked too
        assert browser.get(f"/api/images/{image}/thumbnail").status_code == 200
    return album, images, [job["enhancementJobId"] for job in enhanced["jobs"]]


def stored_files(h: Harness) -> list[str]:
    return sorted(str(p.relative_to(h.storage.root)) for p in h.storage.root.rglob("*") if p.is_file())


def test_export_has_originals_results_and_the_ledger(accounts_api: Harness) -> None:
    h = accounts_api
    person = make_person(h.engine, tokens=20)
    browser = signed_in(h, person)
    album, _, _ = enhanced_album(h, browser, "Summer / 2026")
    response = browser.get("/api/account/export")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = sorted(archive.namelist())
        originals = [n for n in names if n.startswith("originals/")]
        results = [n for n in names if n.startswith("results/")]
        assert len(originals) == 2 and len(results) == 2
        assert {name.split("/")[1] for name in originals + results} == {f"Summer _ 2026-{album[:8]}"}
        assert archive.read(next(n for n in originals if "rocket" in n)) == photo_bytes("rocket.jpg")
        assert all(name.endswith("-1K.jpg") for name in results)
        rows = list(csv.DictReader(io.StringIO(archive.read("ledger.csv").decode())))
    assert [(r["type"], int(r["amount"])) for r in rows] == [("GRANT", 20), ("CONSUME", -4)]
    assert int(rows[-1]["balance_after"]) == 16
    browser.close()


def test_deleting_an_account(accounts_api: Harness) -> None:
    h = accounts_api
    leaving, staying = make_person(h.engine, tokens=40), make_person(h.engine, tokens=40)
    browser, neighbour = signed_in(h, leaving), signed_in(h, staying)
    album, images, jobs = enhanced_album(h, browser, "Leaving")
    kept_album, _, _ = enhanced_album(h, neighbour, "Staying")
    key = browser.post("/api/account/keys", json={"name": "script"}).json()["key"]
    hook = browser.post("/api/webhooks", json={"url": "https://hooks.example.com/leaving"})
    assert hook.status_code == 201, hook.text
    assert browser.post("/api/webhooks/callback-secret").status_code == 201
    neighbour_files = [f for f in stored_files(h) if kept_album in f or f.startswith("deployment")]

    # A batch that has not ended: refused, and nothing changed.
    pending_image = make_image(h.engine, h.storage, album, sort_order=5)
    pending_job = make_pending_job(h.engine, _as_user(leaving), album, pending_image, "TIER_2K")  # type: ignore[arg-type]
    refused = browser.post("/api/account/delete", json={"password": leaving.password})
    assert refused.status_code == 409 and "still running" in refused.json()["error"]
    assert browser.get("/api/me").status_code == 200
    with Session(h.engine) as session:
        pending_batch = session.get_one(EnhancementJob, pending_job).batch_id
    assert browser.post(f"/api/batches/{pending_batch}/cancel").status_code in (200, 202)
    wait_until(lambda: batch_row(h.engine, pending_batch).status in ("CANCELLED", "COMPLETED", "FAILED"))

    wrong = browser.post("/api/account/delete", json={"password": "not my password at all"})
    assert wrong.status_code == 400
    deleted = browser.post("/api/account/delete", json={"password": leaving.password})
    assert deleted.status_code == 204, deleted.text

    # Nothing of theirs in storage, listed folder by folder; the neighbour's files all there.
    remaining = stored_files(h)
    mine = [album, *images, pending_image, *jobs]
    assert [f for f in remaining if any(part in f for part in mine)] == []
    assert set(neighbour_files) <= set(remaining)
    assert neighbour.get(f"/api/albums/{kept_album}/results.zip").status_code == 200

    # Every way in is closed at once.
    assert browser.get("/api/me").status_code == 401
    assert h.http.get("/api/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    again = CookieClient(h.api.base_url).post(
        "/api/auth/signin", json={"email": leaving.email, "password": leaving.password}
    )
    assert again.status_code == 401

    with Session(h.engine) as session:
        row = session.get_one(User, leaving.id)
        assert row.email != leaving.email and row.password_hash is None and row.deleted_at is not None
        assert session.exec(select(User).where(col(User.email) == leaving.email)).first() is None
        assert session.exec(select(UserSession).where(col(UserSession.user_id) == leaving.id)).all() == []
        assert session.exec(select(ApiKey).where(col(ApiKey.user_id) == leaving.id)).all() == []
        # Webhooks: nothing more is sent, and neither the address nor a secret is kept.
        endpoint = session.get_one(WebhookEndpoint, hook.json()["id"])
        assert (endpoint.enabled, endpoint.secret, endpoint.previous_secret) == (False, "", None)
        assert "hooks.example.com" not in endpoint.url
        assert session.get(WebhookCallbackSecret, leaving.id) is None
        assert session.exec(select(Image).where(col(Image.id).in_(images))).all() == []
        # The money history stays, anonymised: batches and jobs without photos, the ledger whole.
        batches = session.exec(select(Batch).where(col(Batch.user_id) == leaving.id)).all()
        assert len(batches) == 2 and all(b.album_id is None for b in batches)
        kinds = session.exec(
            select(TokenTransaction.type)
            .where(col(TokenTransaction.user_id) == leaving.id)
            .order_by(col(TokenTransaction.id))
        ).all()
        assert kinds[:2] == ["GRANT", "CONSUME"]
        # The operator's totals: every balance together equals every ledger row together.
        balances = session.exec(select(func.sum(User.token_balance))).one()
        ledger_total = session.exec(select(func.sum(TokenTransaction.amount))).one()
        assert balances == ledger_total
    assert_balance_matches_ledger(h.engine, staying.id)
    assert_balance_matches_ledger(h.engine, leaving.id)
    assert neighbour.get("/api/me").json()["tokenBalance"] == 36

    browser.close()
    neighbour.close()


class _as_user:  # noqa: N801  (the factories take anything with an id)
    def __init__(self, person: Person) -> None:
        self.id = person.id
