"""Attacks on accounts, over real HTTP: CSRF, session fixation, revoked sessions and keys, throttling at the
window's edge, user enumeration, expired sessions, and the cookies' flags."""

import statistics
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, col, select

from api.deps import CSRF_COOKIE, CSRF_REFUSED, SESSION_COOKIE
from core.errors import RateLimited
from db.models import Album, UserSession, new_id, utcnow
from db.session import session_scope
from services import rate_limit
from services.accounts import WRONG_CREDENTIALS
from storage.local import LocalStorage
from tests.accounts.conftest import PASSWORD, make_person, signed_in
from tests.accounts.helpers import CookieClient, Mailbox, another_address, link_token
from tests.conftest import Harness, LiveServer, engine_for, make_settings


def albums_of(h: Harness, user_id: str) -> list[str]:
    with Session(h.engine) as session:
        return list(session.exec(select(Album.name).where(col(Album.owner_id) == user_id)))


def test_cookie_flags(accounts_api: Harness) -> None:
    browser = signed_in(accounts_api, make_person(accounts_api.engine))
    session_cookie = next(h for h in browser.set_cookie_headers if h.startswith(f"{SESSION_COOKIE}="))
    csrf_cookie = next(h for h in browser.set_cookie_headers if h.startswith(f"{CSRF_COOKIE}="))
    flags = {part.strip().split("=")[0].lower() for part in session_cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= flags and "domain" not in flags
    assert "samesite=lax" in session_cookie.lower() and "path=/" in session_cookie.lower()
    csrf_flags = csrf_cookie.lower()
    assert "secure" in csrf_flags and "httponly" not in csrf_flags  # the page's script reads it
    assert len(browser.cookies[SESSION_COOKIE]) >= 40  # 256 random bits
    browser.close()


def test_csrf_cross_origin_form_and_token_less_fetch_are_refused(accounts_api: Harness) -> None:
    h = accounts_api
    person = make_person(h.engine)
    browser, other = signed_in(h, person), signed_in(h, make_person(h.engine))
    # A form on another site posting with the victim's cookie (SameSite=Lax sends it on a top-level POST in
    # some browsers' grace periods, and always from a same-site subdomain): no token, refused.
    form = browser.post(
        "/api/albums",
        csrf=False,
        content=b"name=Planted",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"},
    )
    assert (form.status_code, form.json()) == (403, {"error": CSRF_REFUSED})
    fetch = browser.post("/api/albums", csrf=False, json={"name": "Planted"})
    assert (fetch.status_code, fetch.json()) == (403, {"error": CSRF_REFUSED})
    wrong = browser.post(
        "/api/albums", csrf=False, json={"name": "Planted"}, headers={"X-CSRF-Token": other.cookies[CSRF_COOKIE]}
    )
    assert wrong.status_code == 403
    assert albums_of(h, person.id) == []
    # Reading needs no token; a change with the session's token goes through.
    assert browser.get("/api/albums").status_code == 200
    assert browser.post("/api/albums", json={"name": "Mine"}).status_code == 201
    assert albums_of(h, person.id) == ["Mine"]
    # Signing in takes JSON only: a cross-site form cannot sign a browser in to the attacker's account.
    login = CookieClient(h.api.base_url).post(
        "/api/auth/signin",
        content=f"email={person.email}&password={PASSWORD}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert login.status_code == 400 and SESSION_COOKIE not in login.headers.get("set-cookie", "")
    browser.close()
    other.close()


def test_session_id_changes_at_sign_in_and_the_planted_one_dies(accounts_api: Harness) -> None:
    h = accounts_api
    attacker, victim = make_person(h.engine), make_person(h.engine)
    planted = signed_in(h, attacker).cookies[SESSION_COOKIE]  # the attacker's own valid session...
    browser = CookieClient(h.api.base_url)
    browser.cookies[SESSION_COOKIE] = planted  # ...planted in the victim's browser
    response = browser.post("/api/auth/signin", json={"email": victim.email, "password": victim.password})
    assert response.status_code == 200
    assert browser.cookies[SESSION_COOKIE] != planted
    assert browser.get("/api/me").json()["email"] == victim.email
    holder = CookieClient(h.api.base_url)
    holder.cookies[SESSION_COOKIE] = planted
    assert holder.get("/api/me").status_code == 401  # the planted id is worth nothing after the sign-in
    # An invented id is never adopted either.
    invented = CookieClient(h.api.base_url)
    invented.cookies[SESSION_COOKIE] = "chosen-by-the-attacker"
    invented.post("/api/auth/signin", json={"email": victim.email, "password": victim.password})
    assert invented.cookies[SESSION_COOKIE] != "chosen-by-the-attacker"


def test_a_revoked_session_or_key_is_refused_at_once(accounts_api: Harness) -> None:
    h = accounts_api
    person = make_person(h.engine)
    laptop, phone = signed_in(h, person, "laptop"), signed_in(h, person, "phone")
    sessions = laptop.get("/api/account/sessions").json()["sessions"]
    assert sorted(s["userAgent"] for s in sessions) == ["laptop", "phone"]
    assert [s["userAgent"] for s in sessions if s["current"]] == ["laptop"]
    phone_id = next(s["id"] for s in sessions if s["userAgent"] == "phone")
    assert phone.get("/api/me").status_code == 200
    assert laptop.request("DELETE", f"/api/account/sessions/{phone_id}").status_code == 204
    assert phone.get("/api/me").status_code == 401

    created = laptop.post("/api/account/keys", json={"name": "backup script"})
    assert created.status_code == 201
    key = created.json()["key"]
    bearer = {"Authorization": f"Bearer {key}"}
    assert h.http.get("/api/me", headers=bearer).json()["email"] == person.email
    listed = laptop.get("/api/account/keys").json()["keys"]
    assert [(k["name"], k["lastUsedAt"] is not None) for k in listed] == [("backup script", True)]
    assert "key" not in listed[0]  # shown once, at creation
    assert laptop.request("DELETE", f"/api/account/keys/{created.json()['id']}").status_code == 204
    assert h.http.get("/api/me", headers=bearer).status_code == 401

    # Sign out everywhere: this browser too.
    again = signed_in(h, person, "tablet")
    assert laptop.post("/api/account/sessions/revoke-all").status_code == 204
    assert laptop.get("/api/me").status_code == 401 and again.get("/api/me").status_code == 401


def test_idle_and_absolute_timeouts(accounts_api: Harness) -> None:
    h = accounts_api
    person = make_person(h.engine)
    idle, old = signed_in(h, person), signed_in(h, person)
    now = utcnow()
    with session_scope(h.engine) as session:
        rows = {
            row.token_hash: row
            for row in session.exec(select(UserSession).where(col(UserSession.user_id) == person.id))
        }
        assert len(rows) == 2
        from services.users import hash_secret

        idle_seconds = h.settings.session_idle_seconds
        session.exec(
            update(UserSession)
            .where(col(UserSession.token_hash) == hash_secret(idle.cookies[SESSION_COOKIE]))
            .values(last_seen_at=now - timedelta(seconds=idle_seconds + 1))
        )
        session.exec(
            update(UserSession)
            .where(col(UserSession.token_hash) == hash_secret(old.cookies[SESSION_COOKIE]))
            .values(expires_at=now - timedelta(seconds=1))
        )
    assert idle.get("/api/me").status_code == 401
    assert old.get("/api/me").status_code == 401
    with Session(h.engine) as session:  # both rows are gone, not just refused
        assert session.exec(select(UserSession).where(col(UserSession.user_id) == person.id)).all() == []


def test_the_throttle_window_edge(accounts_api: Harness) -> None:
    """A sliding window: at most `limit` attempts in any WINDOW seconds; the oldest frees its slot exactly
    WINDOW seconds later, not a microsecond before."""
    h, window, t0 = accounts_api, 900, 1_900_000_000.0
    subject = f"email:{new_id()}"
    for offset in (0.0, 10.0, 20.0):
        with session_scope(h.engine) as session:
            rate_limit.throttle(session, subject, "signin", 3, window, now=t0 + offset)
    with pytest.raises(RateLimited) as refused, session_scope(h.engine) as session:
        rate_limit.throttle(session, subject, "signin", 3, window, now=t0 + window - 0.000001)
    assert refused.value.retry_after == 1
    with session_scope(h.engine) as session:
        state = rate_limit.throttle(session, subject, "signin", 3, window, now=t0 + window)
    assert state.remaining == 0


def test_sign_in_is_throttled_per_account_and_per_address(db_url: str, storage: LocalStorage, mailbox: Mailbox) -> None:
    settings = make_settings(
        db_url, storage, smtp_url=mailbox.url, auth_throttle_per_account=3, auth_throttle_per_address=5
    )
    with LiveServer(settings) as api:
        api.http.headers.update(another_address())
        engine = engine_for(db_url)
        target, other = make_person(engine), make_person(engine)
        for _ in range(3):
            assert (
                api.http.post(
                    "/api/auth/signin", json={"email": target.email, "password": "guess guess guess"}
                ).status_code
                == 401
            )
        # The right password too: the account is throttled, whoever asks.
        blocked = api.http.post("/api/auth/signin", json={"email": target.email, "password": target.password})
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
        # Another account from the same address still gets in, until the address's own limit.
        assert (
            api.http.post("/api/auth/signin", json={"email": other.email, "password": other.password}).status_code
            == 200
        )
        refused = api.http.post("/api/auth/signin", json={"email": other.email, "password": other.password})
        assert refused.status_code == 429  # 5 attempts from this address (the refused one was not counted)
        reset = api.http.post("/api/auth/forgot", json={"email": other.email})
        assert reset.status_code == 202  # its own bucket


def _median_seconds(call: object, times: int = 5) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def test_no_user_enumeration(accounts_api: Harness, mailbox: Mailbox) -> None:
    h = accounts_api
    h.http.headers.update(another_address())
    known = make_person(h.engine)
    unknown = f"nobody-{new_id()[:8]}@example.com"

    def answer(path: str, body: dict[str, str]) -> tuple[int, bytes]:
        response = h.http.post(path, json=body)
        return response.status_code, response.content

    # Sign-in: one refusal for an unknown email and a wrong password, in the same time band (one argon2 each).
    assert answer("/api/auth/signin", {"email": known.email, "password": "not the password"}) == answer(
        "/api/auth/signin", {"email": unknown, "password": "not the password"}
    )
    assert h.http.post("/api/auth/signin", json={"email": unknown, "password": "x"}).json() == {
        "error": WRONG_CREDENTIALS
    }
    wrong = _median_seconds(
        lambda: h.http.post("/api/auth/signin", json={"email": known.email, "password": "nope nope"})
    )
    missing = _median_seconds(lambda: h.http.post("/api/auth/signin", json={"email": unknown, "password": "nope nope"}))
    assert 0.4 < missing / wrong < 2.5, f"wrong password {wrong:.3f}s, unknown email {missing:.3f}s"

    # Sign-up and forgot-password: the same answer whatever the email; only the mail differs.
    fresh = f"fresh-{new_id()[:8]}@example.com"
    assert answer("/api/auth/signup", {"email": known.email, "password": "a brand new passphrase"}) == answer(
        "/api/auth/signup", {"email": fresh, "password": "a brand new passphrase"}
    )
    assert mailbox.wait_for(known.email)["Subject"] == "Your album-enhance account"
    assert mailbox.wait_for(fresh)["Subject"] == "Confirm your email for album-enhance"
    assert answer("/api/auth/forgot", {"email": known.email}) == answer("/api/auth/forgot", {"email": unknown})
    known_time = _median_seconds(lambda: h.http.post("/api/auth/forgot", json={"email": known.email}), 3)
    unknown_time = _median_seconds(lambda: h.http.post("/api/auth/forgot", json={"email": unknown}), 3)
    assert abs(known_time - unknown_time) < 0.25, (known_time, unknown_time)  # the mail goes after the answer


def test_changing_the_password_signs_out_the_other_browsers(accounts_api: Harness) -> None:
    h = accounts_api
    person = make_person(h.engine)
    here, elsewhere = signed_in(h, person, "here"), signed_in(h, person, "elsewhere")
    wrong = here.post("/api/account/password", json={"currentPassword": "not it at all", "newPassword": "x" * 12})
    assert wrong.status_code == 400 and elsewhere.get("/api/me").status_code == 200
    weak = here.post("/api/account/password", json={"currentPassword": PASSWORD, "newPassword": "qwertyuiop"})
    assert weak.status_code == 400
    changed = here.post(
        "/api/account/password", json={"currentPassword": PASSWORD, "newPassword": "paper boats at dawn"}
    )
    assert changed.status_code == 204
    assert here.get("/api/me").status_code == 200 and elsewhere.get("/api/me").status_code == 401
    fresh = CookieClient(h.api.base_url)
    assert fresh.post("/api/auth/signin", json={"email": person.email, "password": PASSWORD}).status_code == 401
    assert (
        fresh.post("/api/auth/signin", json={"email": person.email, "password": "paper boats at dawn"}).status_code
        == 200
    )


def test_signing_up_first_with_someone_elses_email_does_not_choose_their_password(
    accounts_api: Harness, mailbox: Mailbox
) -> None:
    """Account pre-hijacking: an attacker signs up with the victim's email and waits for the victim to confirm it.
    The victim's own link sets the victim's own password; the attacker's never gets in."""
    h = accounts_api
    victim = f"victim-{new_id()[:8]}@example.com"
    attacker = CookieClient(h.api.base_url)
    assert (
        attacker.post("/api/auth/signup", json={"email": victim, "password": "the attacker's passphrase"}).status_code
        == 202
    )
    person = CookieClient(h.api.base_url)
    assert (
        person.post("/api/auth/signup", json={"email": victim, "password": "the victim's own phrase"}).status_code
        == 202
    )
    mailbox.wait_for(victim, 2)
    assert (
        person.post("/api/auth/verify", json={"token": link_token(mailbox.to(victim)[1], "verify")}).status_code == 200
    )
    # The attacker's link, opened later (by mistake), confirms nothing new and sets no password.
    assert (
        person.post("/api/auth/verify", json={"token": link_token(mailbox.to(victim)[0], "verify")}).status_code == 200
    )
    assert (
        attacker.post("/api/auth/signin", json={"email": victim, "password": "the attacker's passphrase"}).status_code
        == 401
    )
    assert (
        person.post("/api/auth/signin", json={"email": victim, "password": "the victim's own phrase"}).status_code
        == 200
    )
