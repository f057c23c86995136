"""A person's whole account journey over real HTTP, with a real SMTP server: sign up, the verification mail,
verify, sign in, enhance, sign out, reset the password by mail, sign in with the new one (SQLite and PostgreSQL)."""

from collections.abc import Iterator

import pytest

from storage.local import LocalStorage
from tests.accounts.helpers import CookieClient, Mailbox, body_of, link_token
from tests.conftest import Harness, LiveServer, engine_for, make_settings, wait_until
from tests.db_helpers import assert_balance_matches_ledger, batch_row
from tests.factories import jpeg_bytes

EMAIL = "ada@example.com"
PASSWORD = "a long walk by the river"
NEW_PASSWORD = "tea with lemon, no sugar"
SIGNUP_TOKENS = 7


@pytest.fixture
def flow_api(db_url: str, storage: LocalStorage, mailbox: Mailbox) -> Iterator[Harness]:
    settings = make_settings(
        db_url, storage, smtp_url=mailbox.url, signup_tokens=SIGNUP_TOKENS, public_url="https://photos.example"
    )
    with LiveServer(settings) as api:
        yield Harness(settings, engine_for(db_url), storage, api)


def test_sign_up_verify_sign_in_enhance_sign_out_reset_sign_in(flow_api: Harness, mailbox: Mailbox) -> None:
    h = flow_api
    email = f"{h.settings.task_queue[-8:]}-{EMAIL}"  # the databases are shared across tests
    browser = CookieClient(h.api.base_url)
    try:
        signed_up = browser.post("/api/auth/signup", json={"email": email.upper(), "password": PASSWORD})
        assert signed_up.status_code == 202, signed_up.text
        verify_mail = mailbox.wait_for(email)
        assert verify_mail["Subject"] == "Confirm your email for album-enhance"
        assert "https://photos.example/account#/verify/" in body_of(verify_mail)  # PUBLIC_URL, not the Host header
        token = link_token(verify_mail, "verify")

        # Not before the address is confirmed.
        early = browser.post("/api/auth/signin", json={"email": email, "password": PASSWORD})
        assert early.status_code == 403 and "Confirm your email" in early.json()["error"]
        assert browser.session_token is None

        assert browser.post("/api/auth/verify", json={"token": token}).status_code == 200
        again = browser.post("/api/auth/verify", json={"token": token})  # single use
        assert again.status_code == 400 and "not valid" in again.json()["error"]

        signed_in = browser.post("/api/auth/signin", json={"email": email, "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        assert browser.session_token is not None
        me = browser.get("/api/me").json()
        assert me["email"] == email and me["tokenBalance"] == SIGNUP_TOKENS

        album = browser.post("/api/albums", json={"name": "First roll"})
        assert album.status_code == 201, album.text
        album_id = album.json()["id"]
        uploaded = browser.post(
            f"/api/albums/{album_id}/images", files=[("files", ("one.jpg", jpeg_bytes(), "image/jpeg"))]
        )
        assert uploaded.status_code == 201, uploaded.text
        enhanced = browser.post(f"/api/albums/{album_id}/enhance", json={"tier": "TIER_1K"})
        assert enhanced.status_code == 200, enhanced.text
        assert enhanced.json()["newBalance"] == SIGNUP_TOKENS - 2
        batch_id = enhanced.json()["batchId"]
        wait_until(lambda: batch_row(h.engine, batch_id).status == "COMPLETED")
        job = enhanced.json()["jobs"][0]["enhancementJobId"]
        assert browser.get(f"/api/jobs/{job}/result").status_code == 200

        old_token = browser.session_token
        assert browser.post("/api/auth/signout").status_code == 204
        assert browser.session_token is None
        browser.cookies["__Host-ae_session"] = old_token  # a copy of the cookie kept somewhere: worth nothing now
        assert browser.get("/api/me").status_code == 401
        browser.cookies.clear()

        assert browser.post("/api/auth/forgot", json={"email": email}).status_code == 202
        reset_mail = mailbox.wait_for(email, count=2)
        reset_token = link_token(reset_mail, "reset")
        weak = browser.post("/api/auth/reset", json={"token": reset_token, "password": "password123"})
        assert weak.status_code == 400  # refused by the rules: the link stays usable
        reset = browser.post("/api/auth/reset", json={"token": reset_token, "password": NEW_PASSWORD})
        assert reset.status_code == 200, reset.text
        reused = browser.post("/api/auth/reset", json={"token": reset_token, "password": "another good passphrase"})
        assert reused.status_code == 400

        old = browser.post("/api/auth/signin", json={"email": email, "password": PASSWORD})
        assert old.status_code == 401 and old.json()["error"] == "Wrong email or password"
        new = browser.post("/api/auth/signin", json={"email": email, "password": NEW_PASSWORD})
        assert new.status_code == 200, new.text
        assert browser.get("/api/me").json()["tokenBalance"] == SIGNUP_TOKENS - 2
        assert_balance_matches_ledger(h.engine, me["id"])
    finally:
        browser.close()
