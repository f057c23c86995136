"""Fixtures of the account tests: a real SMTP server, the API sending mail to it, and people with passwords."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from db import ledger
from db.models import User, new_id, utcnow
from db.session import session_scope
from services.passwords import hash_password
from storage.local import LocalStorage
from tests.accounts.helpers import CookieClient, Mailbox, smtp_server
from tests.conftest import Harness, LiveServer, engine_for, make_settings

PASSWORD = "a long walk by the river"
# One hash for every test person: argon2 takes a good part of a second on a loaded machine.
_PASSWORD_HASH = hash_password(PASSWORD)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def accounts_api(db_url: str, storage: LocalStorage, mailbox: Mailbox) -> Iterator[Harness]:
    """The API (direct mode) on each database, mailing to the test's SMTP server."""
    settings = make_settings(db_url, storage, smtp_url=mailbox.url, public_url="https://photos.example")
    with LiveServer(settings) as api:
        yield Harness(settings, engine_for(db_url), storage, api)


@dataclass(frozen=True)
class Person:
    id: str
    email: str
    password: str


def make_person(engine: Engine, tokens: int = 50) -> Person:
    """A verified account with a password (as sign-up and verification leave it)."""
    email = f"person-{new_id()[:10]}@example.com"
    with session_scope(engine) as session:
        user = User(email=email, password_hash=_PASSWORD_HASH, email_verified_at=utcnow())
        session.add(user)
        session.flush()
        if tokens:
            ledger.grant(session, user.id, tokens, "test:grant")
        return Person(user.id, email, PASSWORD)


def signed_in(h: Harness, person: Person, user_agent: str = "test-browser") -> CookieClient:
    browser = CookieClient(h.api.base_url, user_agent)
    response = browser.post("/api/auth/signin", json={"email": person.email, "password": person.password})
    assert response.status_code == 200, response.text
    return browser
