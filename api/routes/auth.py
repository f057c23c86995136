"""Signing up, confirming the email, signing in and out, and resetting a forgotten password.

These routes take JSON only: a form of another site (which can post urlencoded, multipart or text/plain bodies
across origins without asking) gets 400, so it cannot sign a browser in to an account of its choosing either.
"""

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request, Response, status

from api.account_schemas import AccountOut, Credentials, EmailIn, MessageOut, ResetIn, SignedInOut, TokenIn
from api.deps import CSRF_COOKIE, SESSION_COOKIE, CallerDep, MailerDep, SessionDep, SettingsDep
from api.schemas import ErrorOut
from core.config import Settings
from core.errors import InvalidRequest
from db.models import User
from services import accounts
from services.mail import send_quietly

router = APIRouter(prefix="/auth", tags=["sign in"])

CHECK_MAIL = "Check your mail: we sent a link to confirm the address (if it has an account already, the mail says so)"
RESET_SENT = "If that address has an account, a link to choose a new password is on its way"


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


def client_of(request: Request) -> accounts.Client:
    """The caller's address (behind a proxy: uvicorn's FORWARDED_ALLOW_IPS makes it the forwarded one)."""
    address = request.client.host if request.client is not None else "unknown"
    return accounts.Client(address, request.headers.get("user-agent"))


def account_out(user: User, session_id: str | None) -> AccountOut:
    return AccountOut(
        id=user.id,
        email=user.email,
        token_balance=user.token_balance,
        email_verified=user.email_verified_at is not None,
        has_password=user.password_hash is not None,
        created_at=user.created_at,
        session_id=session_id,
    )


def set_session_cookies(response: Response, settings: Settings, token: str, csrf_token: str) -> None:
    common: dict[str, Any] = {"max_age": settings.session_absolute_seconds, "path": "/", "secure": True}
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", **common)
    response.set_cookie(CSRF_COOKIE, csrf_token, httponly=False, samesite="strict", **common)


def clear_session_cookies(response: Response) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=True, httponly=name == SESSION_COOKIE, samesite="lax")


@router.post(
    "/signup", response_model=MessageOut, status_code=status.HTTP_202_ACCEPTED, responses=_errors(400, 403, 429)
)
def sign_up(
    body: Credentials,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    settings: SettingsDep,
    mailer: MailerDep,
) -> MessageOut:
    """Open an account: a link to confirm the email is mailed (SIGNUP_TOKENS are granted when it is opened). The
    answer is the same whether or not the email has an account already; the mail tells its owner which."""
    mail = accounts.sign_up(session, settings, body.email, body.password, client_of(request))
    background.add_task(send_quietly, mailer, mail)
    return MessageOut(message=CHECK_MAIL)


@router.post("/verify", response_model=MessageOut, responses=_errors(400))
def verify(body: TokenIn, session: SessionDep, settings: SettingsDep) -> MessageOut:
    """Confirm an email with the token of the mailed link (once; the link expires)."""
    accounts.verify_email(session, settings, body.token)
    return MessageOut(message="Email confirmed: you can sign in")


@router.post("/signin", response_model=SignedInOut, responses=_errors(400, 401, 403, 429))
def sign_in(
    body: Credentials, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> SignedInOut:
    """Start a session: an HttpOnly, Secure, SameSite=Lax cookie, always a new one (the browser's previous session
    ends). One refusal for an unknown email and a wrong password; throttled per email and per address."""
    new = accounts.sign_in(
        session, settings, body.email, body.password, client_of(request), request.cookies.get(SESSION_COOKIE)
    )
    set_session_cookies(response, settings, new.token, new.csrf_token)
    return SignedInOut(account=account_out(new.user, new.session_id), csrf_token=new.csrf_token)


@router.post("/signout", status_code=status.HTTP_204_NO_CONTENT, responses=_errors(400, 401, 403))
def sign_out(caller: CallerDep, session: SessionDep) -> Response:
    """End this browser's session (with the CSRF token, as every change with the cookie)."""
    if caller.session_token is None:
        raise InvalidRequest("Not signed in with a session (an API key is revoked on the account page)")
    accounts.end_session(session, caller.session_token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response


@router.post("/forgot", response_model=MessageOut, status_code=status.HTTP_202_ACCEPTED, responses=_errors(400, 429))
def forgot(
    body: EmailIn,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    settings: SettingsDep,
    mailer: MailerDep,
) -> MessageOut:
    """Mail a single-use link to choose a new password, if the email has an account; the answer is the same."""
    mail = accounts.forgot_password(session, settings, body.email, client_of(request))
    if mail is not None:
        background.add_task(send_quietly, mailer, mail)
    return MessageOut(message=RESET_SENT)


@router.post("/reset", response_model=MessageOut, responses=_errors(400, 429))
def reset(body: ResetIn, request: Request, session: SessionDep, settings: SettingsDep) -> MessageOut:
    """Choose a new password with the mailed link's token: every session of the account ends."""
    accounts.reset_password(session, settings, body.token, body.password, client_of(request))
    return MessageOut(message="Password changed: sign in with the new one")
