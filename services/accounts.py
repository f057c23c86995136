"""Accounts for people: sign up, verify the email, sign in to a server-side session, reset a forgotten password.

Nothing here tells whether an email has an account: sign-up and "forgot password" answer the same whatever the
email (the mail says what happened), sign-in has one refusal for an unknown email and a wrong password and spends
one argon2 verification on either, and mails go out after the answer. Sign-in and reset are throttled per email
and per client address (services.rate_limit: a sliding window in the database, shared by every replica).

Secrets (session tokens, mailed link tokens) are 256-bit random strings kept only as SHA-256 hashes. Each step is
one transaction, begun and committed here.
"""

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.config import Settings
from core.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from db import ledger
from db.models import AccountToken, User, UserSession, utcnow
from db.session import transaction
from services import passwords, rate_limit
from services.mail import Mail
from services.users import find_user_by_email, hash_secret, normalise_email

VERIFY, RESET = "verify", "reset"
WRONG_CREDENTIALS = "Wrong email or password"
INVALID_LINK = "This link is not valid any more (used, expired or mistyped): ask for a new one"
# Deliberately loose (one @, a dot in the domain, no spaces): whether mail arrives is what verification proves.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A session's last request is written at most this often (the idle timeout is this precise).
LAST_SEEN_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class Client:
    """Who is asking, as far as the server can tell: for throttling and the list of sessions."""

    address: str
    user_agent: str | None


@dataclass(frozen=True)
class NewSession:
    token: str  # the cookie's value, never stored
    csrf_token: str
    user: User
    session_id: str


def csrf_token_of(session_token: str) -> str:
    """The CSRF token of a session: derived from its secret, so it needs no storage and changes with the session."""
    return hash_secret(f"csrf:{session_token}")


def csrf_matches(session_token: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(csrf_token_of(session_token).encode(), sent.encode())


def valid_email(email: str) -> str:
    email = normalise_email(email)
    if len(email) > 320 or not _EMAIL.match(email):
        raise InvalidRequest("Not an email address")
    return email


def _throttle(session: Session, settings: Settings, bucket: str, email: str, client: Client) -> None:
    """Count one attempt for the email and for the address (committed, so a refused attempt still counts)."""
    window = settings.auth_throttle_window_seconds
    with transaction(session):
        rate_limit.throttle(
            session, f"address:{client.address}"[:100], bucket, settings.auth_throttle_per_address, window
        )
    with transaction(session):
        rate_limit.throttle(session, f"email:{hash_secret(email)}", bucket, settings.auth_throttle_per_account, window)


def _new_link(
    session: Session, user_id: str, purpose: str, lifetime_seconds: int, password_hash: str | None = None
) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    # The user's dead links (used or expired) go now: the table holds only links that may still be opened.
    session.exec(
        delete(AccountToken).where(
            col(AccountToken.user_id) == user_id,
            col(AccountToken.used_at).is_not(None) | (col(AccountToken.expires_at) <= now),
        )
    )
    session.add(
        AccountToken(
            token_hash=hash_secret(token),
            user_id=user_id,
            purpose=purpose,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime_seconds),
            password_hash=password_hash,
        )
    )
    session.flush()
    return token


def _verify_mail(settings: Settings, email: str, token: str) -> Mail:
    hours = settings.verify_link_seconds // 3600
    return Mail(
        email,
        "Confirm your email for album-enhance",
        f"Welcome to album-enhance.\n\nConfirm this address to start (the link works once, for {hours} hours):\n"
        f"{settings.web_url}/account#/verify/{token}\n\nIf you did not sign up, ignore this mail.\n",
    )


def _already_mail(settings: Settings, email: str) -> Mail:
    return Mail(
        email,
        "Your album-enhance account",
        "Someone (you, probably) tried to sign up with this address, which has an account already.\n\n"
        f"Sign in: {settings.web_url}/account#/signin\nForgot the password? {settings.web_url}/account#/forgot\n",
    )


def sign_up(session: Session, settings: Settings, email: str, password: str, client: Client) -> Mail:
    """Open an unverified account (or not, when the email has one) and return the mail to send either way."""
    if not settings.signup_open:
        raise Forbidden("Sign-up is closed: ask an operator for an account")
    email = valid_email(email)
    password = passwords.check_rules(password, email)
    with transaction(session):
        rate_limit.throttle(
            session,
            f"address:{client.address}"[:100],
            "signup",
            settings.auth_throttle_per_address,
            settings.auth_throttle_window_seconds,
        )
    password_hash = passwords.hash_password(password)  # always, so both answers take the same time
    try:
        with transaction(session):
            existing = find_user_by_email(session, email)
            if existing is not None and existing.email_verified_at is not None:
                return _already_mail(settings, email)
            if existing is None:
                existing = User(email=email, password_hash=password_hash)
                session.add(existing)
                session.flush()
            # Unverified (new, or signed up before without confirming): a fresh link that carries this sign-up's
            # password, which the account takes when the link is opened. So someone who signs up first with
            # another person's email (hoping they confirm it later) does not choose the password they will have.
            link = _new_link(session, existing.id, VERIFY, settings.verify_link_seconds, password_hash)
            return _verify_mail(settings, email, link)
    except IntegrityError:  # the same email signed up at the same moment: that request sends the link
        return _already_mail(settings, email)


def _consume_link(session: Session, token: str, purpose: str) -> tuple[str, str | None]:
    """Mark a mailed link used, once and before it expires (one conditional UPDATE): (the user's id, the password
    hash the link carries, if any)."""
    used = session.exec(
        update(AccountToken)
        .where(
            col(AccountToken.token_hash) == hash_secret(token),
            col(AccountToken.purpose) == purpose,
            col(AccountToken.used_at).is_(None),
            col(AccountToken.expires_at) > utcnow(),
        )
        .values(used_at=utcnow())
        .returning(col(AccountToken.user_id), col(AccountToken.password_hash))
    ).one_or_none()
    if used is None:
        raise InvalidRequest(INVALID_LINK)
    return str(used[0]), used[1]


def verify_email(session: Session, settings: Settings, token: str) -> None:
    """Confirm the email of the link; the first confirmation grants SIGNUP_TOKENS (once: the UPDATE is conditional)."""
    with transaction(session):
        _confirm_email(session, settings, *_consume_link(session, token, VERIFY))


def _confirm_email(session: Session, settings: Settings, user_id: str, password_hash: str | None) -> None:
    """Mark the email confirmed (and, from a sign-up's link, set that sign-up's password); only the first time."""
    values = {"email_verified_at": utcnow()} | ({"password_hash": password_hash} if password_hash else {})
    verified = session.exec(
        update(User)
        .where(col(User.id) == user_id, col(User.email_verified_at).is_(None), col(User.deleted_at).is_(None))
        .values(**values)
    )
    if verified.rowcount == 1 and settings.signup_tokens > 0:
        ledger.grant(session, user_id, settings.signup_tokens, f"signup:{user_id}")


def start_session(session: Session, settings: Settings, user_id: str, client: Client) -> tuple[str, UserSession]:
    """A new session of the user (in the caller's transaction): (its token, its row). The user's sessions that
    have run out go now, so a browser that never came back leaves no row behind for long."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    idle_since = now - timedelta(seconds=settings.session_idle_seconds)
    session.exec(
        delete(UserSession).where(
            col(UserSession.user_id) == user_id,
            (col(UserSession.expires_at) <= now) | (col(UserSession.last_seen_at) <= idle_since),
        )
    )
    row = UserSession(
        user_id=user_id,
        token_hash=hash_secret(token),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.session_absolute_seconds),
        user_agent=(client.user_agent or "")[:200] or None,
        address=client.address[:64],
    )
    session.add(row)
    session.flush()
    return token, row


def sign_in(
    session: Session, settings: Settings, email: str, password: str, client: Client, previous_token: str | None
) -> NewSession:
    """A new session for the right email and password; the session the browser had before (if any) ends, so an id
    planted before sign-in is worth nothing after it."""
    email = normalise_email(email)
    _throttle(session, settings, "signin", email, client)
    with transaction(session):
        user = find_user_by_email(session, email)
    stored = user.password_hash if user is not None and user.deleted_at is None else None
    matches = passwords.verify_password(stored, password)  # also for an unknown email: the same time either way
    if user is None or not matches:
        raise Unauthorized(WRONG_CREDENTIALS)
    if user.email_verified_at is None:
        raise Forbidden("Confirm your email first: open the link we mailed you (sign up again for a new one)")
    with transaction(session):
        if previous_token is not None:
            session.exec(delete(UserSession).where(col(UserSession.token_hash) == hash_secret(previous_token)))
        if stored is not None and passwords.needs_rehash(stored):
            session.exec(
                update(User).where(col(User.id) == user.id).values(password_hash=passwords.hash_password(password))
            )
        token, row = start_session(session, settings, user.id, client)
    return NewSession(token, csrf_token_of(token), user, row.id)


def user_of_session(session: Session, settings: Settings, token: str) -> tuple[User, UserSession] | None:
    """The user and session of a token, if the session lives (one that has run out is deleted, in the caller's
    transaction: a rare write, on a refusal)."""
    row = session.exec(
        select(User, UserSession)
        .join(UserSession, col(UserSession.user_id) == col(User.id))
        .where(col(UserSession.token_hash) == hash_secret(token), col(User.deleted_at).is_(None))
    ).first()
    if row is None:
        return None
    user, user_session = row
    now = utcnow()
    idle = timedelta(seconds=settings.session_idle_seconds)
    if now >= user_session.expires_at or now - user_session.last_seen_at >= idle:
        session.exec(delete(UserSession).where(col(UserSession.id) == user_session.id))
        return None
    return user, user_session


def session_use_due(user_session: UserSession) -> bool:
    return utcnow() - user_session.last_seen_at >= LAST_SEEN_PRECISION


def note_session_use(session: Session, session_id: str) -> None:
    """Move a session's last request forward, what the idle timeout counts from (in the caller's transaction)."""
    now = utcnow()
    session.exec(
        update(UserSession)
        .where(col(UserSession.id) == session_id, col(UserSession.last_seen_at) <= now - LAST_SEEN_PRECISION)
        .values(last_seen_at=now)
    )


def end_session(session: Session, token: str) -> None:
    with transaction(session):
        session.exec(delete(UserSession).where(col(UserSession.token_hash) == hash_secret(token)))


def end_all_sessions(session: Session, user_id: str) -> int:
    with transaction(session):
        return int(session.exec(delete(UserSession).where(col(UserSession.user_id) == user_id)).rowcount)


def end_session_by_id(session: Session, user_id: str, session_id: str) -> None:
    """Revoke one of the user's sessions; another user's is NotFound."""
    with transaction(session):
        removed = session.exec(
            delete(UserSession).where(col(UserSession.id) == session_id, col(UserSession.user_id) == user_id)
        )
        if removed.rowcount == 0:
            raise NotFound("Session not found")


def list_sessions(session: Session, user_id: str) -> list[UserSession]:
    return list(
        session.exec(
            select(UserSession)
            .where(col(UserSession.user_id) == user_id)
            .order_by(col(UserSession.last_seen_at).desc())
        )
    )


def forgot_password(session: Session, settings: Settings, email: str, client: Client) -> Mail | None:
    """The reset mail to send, if the email has an account (the caller answers the same either way)."""
    email = normalise_email(email)
    _throttle(session, settings, "reset", email, client)
    with transaction(session):
        user = find_user_by_email(session, email)
        if user is None or user.deleted_at is not None:
            return None
        token = _new_link(session, user.id, RESET, settings.reset_link_seconds)
    minutes = settings.reset_link_seconds // 60
    return Mail(
        email,
        "Reset your album-enhance password",
        f"Choose a new password here (the link works once, for {minutes} minutes):\n"
        f"{settings.web_url}/account#/reset/{token}\n\n"
        "If you did not ask for this, ignore this mail: your password stays as it is.\n",
    )


def reset_password(session: Session, settings: Settings, token: str, password: str, client: Client) -> None:
    """Set a new password with a reset link: every session of the account ends, and every other reset link dies.
    A password the rules refuse leaves the link usable."""
    _throttle(session, settings, "reset", f"link:{hash_secret(token)}", client)
    with transaction(session):
        link = session.get(AccountToken, hash_secret(token))
        user = session.get(User, link.user_id) if link is not None and link.purpose == RESET else None
    if user is None:
        raise InvalidRequest(INVALID_LINK)
    password = passwords.check_rules(password, user.email)
    password_hash = passwords.hash_password(password)
    with transaction(session):
        user_id, _ = _consume_link(session, token, RESET)
        session.exec(update(User).where(col(User.id) == user_id).values(password_hash=password_hash))
        _confirm_email(session, settings, user_id, None)  # the mail arrived: the address is confirmed
        session.exec(delete(UserSession).where(col(UserSession.user_id) == user_id))
        session.exec(
            update(AccountToken)
            .where(col(AccountToken.user_id) == user_id, col(AccountToken.purpose) == RESET)
            .where(col(AccountToken.used_at).is_(None))
            .values(used_at=utcnow())
        )


def change_password(
    session: Session, settings: Settings, user: User, current: str, new: str, keep_session_id: str | None
) -> None:
    """Replace the password, given the current one (an account without one sets it by "forgot password"); every
    other session of the account ends, the caller's own stays."""
    if not passwords.verify_password(user.password_hash, current):
        raise InvalidRequest("Your current password is not that")
    password_hash = passwords.hash_password(passwords.check_rules(new, user.email))
    with transaction(session):
        session.exec(update(User).where(col(User.id) == user.id).values(password_hash=password_hash))
        others = delete(UserSession).where(col(UserSession.user_id) == user.id)
        if keep_session_id is not None:
            others = others.where(col(UserSession.id) != keep_session_id)
        session.exec(others)
