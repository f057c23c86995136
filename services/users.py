"""Users and their API keys: only a key's hash is stored, so a key is shown once, when it is made."""

import hashlib
import secrets

from sqlmodel import Session, col, select

from core.errors import Conflict
from db import ledger
from db.models import User


def new_api_key() -> str:
    """A fresh API key."""
    return "ae_" + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def user_of_key(session: Session, api_key: str) -> User | None:
    """The user an API key belongs to, if any."""
    return session.exec(select(User).where(col(User.api_key_hash) == hash_api_key(api_key))).first()


def create_user(session: Session, email: str, tokens: int, grant_reference: str) -> tuple[User, str]:
    """A new user and its API key, with a first grant of `tokens` (if any) in the ledger, in the caller's
    transaction; Conflict if the email is taken."""
    if session.exec(select(User.id).where(col(User.email) == email)).first() is not None:
        raise Conflict(f"a user with email {email} exists already")
    api_key = new_api_key()
    user = User(email=email, api_key_hash=hash_api_key(api_key))
    session.add(user)
    session.flush()
    if tokens:
        ledger.grant(session, user.id, tokens, grant_reference)
    return user, api_key
