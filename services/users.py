"""Users and their API keys: only a key's hash is stored, so a key is shown once, when it is made."""

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from core.errors import Conflict, InvalidRequest, NotFound
from db import ledger
from db.models import ApiKey, User, utcnow

MAX_KEYS = 50
OPERATOR_KEY_NAME = "Operator key"
# A key's last use is written at most this often: a busy client does not write a row per request.
LAST_USED_PRECISION = timedelta(minutes=1)


def new_api_key() -> str:
    """A fresh API key."""
    return "ae_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored form of an API key, a session token or a mailed link's token: all are 256-bit random secrets,
    so a plain SHA-256 is enough, and a lookup by hash never compares the secret itself character by character."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_of(session: Session, api_key: str) -> tuple[User, ApiKey] | None:
    """The live user an API key belongs to, and the key's row, if any (reads only)."""
    row = session.exec(
        select(User, ApiKey)
        .join(ApiKey, col(ApiKey.user_id) == col(User.id))
        .where(col(ApiKey.key_hash) == hash_secret(api_key), col(User.deleted_at).is_(None))
    ).first()
    return (row[0], row[1]) if row is not None else None


def user_of_key(session: Session, api_key: str) -> User | None:
    """The user an API key belongs to, if any."""
    found = key_of(session, api_key)
    return found[0] if found is not None else None


def key_use_due(key: ApiKey) -> bool:
    """Whether the key's last use is older than what is worth writing down."""
    return key.last_used_at is None or utcnow() - key.last_used_at >= LAST_USED_PRECISION


def note_key_use(session: Session, key_id: str) -> None:
    """Write down that a key was used (in the caller's transaction); conditional, so simultaneous requests of one
    key write it once."""
    now = utcnow()
    session.exec(
        update(ApiKey)
        .where(
            col(ApiKey.id) == key_id,
            col(ApiKey.last_used_at).is_(None) | (col(ApiKey.last_used_at) <= now - LAST_USED_PRECISION),
        )
        .values(last_used_at=now)
    )


def find_user_by_email(session: Session, email: str) -> User | None:
    """The live account with this email (compared case-insensitively), if any."""
    return session.exec(select(User).where(col(User.email) == normalise_email(email))).first()


def normalise_email(email: str) -> str:
    """Emails are account names: stored and compared trimmed and lower-cased."""
    return email.strip().lower()


def create_user(session: Session, email: str, tokens: int, grant_reference: str) -> tuple[User, str]:
    """A new user and its API key, with a first grant of `tokens` (if any) in the ledger, in the caller's
    transaction; Conflict if the email is taken."""
    email = normalise_email(email)
    if session.exec(select(User.id).where(col(User.email) == email)).first() is not None:
        raise Conflict(f"a user with email {email} exists already")
    user = User(email=email, email_verified_at=utcnow())  # the operator vouches for the address
    session.add(user)
    session.flush()
    api_key, _ = create_key(session, user.id, OPERATOR_KEY_NAME)
    if tokens:
        ledger.grant(session, user.id, tokens, grant_reference)
    return user, api_key


def create_key(session: Session, user_id: str, name: str) -> tuple[str, ApiKey]:
    """A new named key of the user: (the key, shown this once; its row)."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidRequest("A key's name must be 1 to 100 characters")
    count = len(session.exec(select(ApiKey.id).where(col(ApiKey.user_id) == user_id)).all())
    if count >= MAX_KEYS:
        raise Conflict(f"At most {MAX_KEYS} keys per account: revoke one first")
    api_key = new_api_key()
    row = ApiKey(user_id=user_id, name=name, key_hash=hash_secret(api_key))
    session.add(row)
    session.flush()
    return api_key, row


def list_keys(session: Session, user_id: str) -> list[ApiKey]:
    return list(
        session.exec(
            select(ApiKey).where(col(ApiKey.user_id) == user_id).order_by(col(ApiKey.created_at), col(ApiKey.id))
        )
    )


def revoke_key(session: Session, user_id: str, key_id: str) -> None:
    """Delete one of the user's keys: refused from the next request on. Another user's key is NotFound."""
    removed = session.exec(delete(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.user_id) == user_id))
    if removed.rowcount == 0:
        raise NotFound("Key not found")
