"""Annotated dependencies: settings, session, storage, launcher, the current user and ownership checks."""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from api.schemas import IMAGE_IDS_RULE, EnhanceRequest
from api.state import app_state
from core.config import Settings
from core.errors import Forbidden, InvalidRequest, NotFound, TooManyFailedAuthentications, Unauthorized
from core.vocabulary import OutputFormat
from db.models import Album, Batch, EnhancementJob, Image, User, UserSession, WebhookEndpoint
from db.session import transaction, without_waiting
from services import webhooks
from services.accounts import csrf_matches, note_session_use, session_use_due, user_of_session
from services.launcher import BatchLauncher
from services.mail import Mailer
from services.uploads import DecodeSlots
from services.users import key_of, key_use_due, note_key_use
from services.webhooks import WebhookLauncher
from storage.base import Storage

T = TypeVar("T")
log = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, description="The API key printed by `album-enhance users create`")


def get_settings(request: Request) -> Settings:
    return app_state(request.app).settings


def get_db(request: Request) -> Iterator[Session]:
    with Session(app_state(request.app).engine, expire_on_commit=False) as session:
        yield session


def get_engine(request: Request) -> Engine:
    return app_state(request.app).engine


def get_storage(request: Request) -> Storage:
    return app_state(request.app).storage


def get_launcher(request: Request) -> BatchLauncher:
    return app_state(request.app).launcher


def get_decode_slots(request: Request) -> DecodeSlots:
    return app_state(request.app).decode_slots


def get_mailer(request: Request) -> Mailer:
    return app_state(request.app).mailer


SettingsDep = Annotated[Settings, Depends(get_settings)]
# Closed as soon as the route function returns, before the response is sent: a slow reader of the response
# does not hold a database connection.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
EngineDep = Annotated[Engine, Depends(get_engine)]
StorageDep = Annotated[Storage, Depends(get_storage)]
LauncherDep = Annotated[BatchLauncher, Depends(get_launcher)]
DecodeSlotsDep = Annotated[DecodeSlots, Depends(get_decode_slots)]
MailerDep = Annotated[Mailer, Depends(get_mailer)]


# The contract fixes `error`; the hint tells a newcomer how to send the key.
AUTH_HINT = "Send your API key in the header 'Authorization: Bearer <key>' (see `album-enhance users create`)"

# The session cookie: HttpOnly (no script reads it), Secure, SameSite=Lax, and __Host- (this host only, path /).
SESSION_COOKIE = "__Host-ae_session"
# Cookie-authenticated requests that change something must send the session's CSRF token in this header: a page
# of another site can make the browser send the cookie, but can neither read the token nor set a header.
CSRF_HEADER = "X-CSRF-Token"
CSRF_COOKIE = "__Host-ae_csrf"  # readable by the page's script (not HttpOnly), sent back in CSRF_HEADER
CSRF_REFUSED = "Missing or wrong CSRF token: send the X-CSRF-Token header with the session's token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """Who is calling: the user, and the session (its row and token) when they came with the cookie, not a key."""

    user: User
    session: UserSession | None = None
    session_token: str | None = None


def _note_use(session: Session, note: Callable[[Session, str], None], row_id: str) -> None:
    """Write down a key's or session's use (at most once a minute each), or skip it when it would wait: a request
    is never held up by this bookkeeping (the next one writes it)."""
    try:
        with transaction(session), without_waiting(session):
            note(session, row_id)
    except OperationalError:
        log.info("last use of %s not written now: the database is busy", row_id)


def get_caller(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """An API key in the Authorization header, or else the session cookie (with the CSRF token for a change)."""
    if request.headers.get("authorization") is not None:
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise Unauthorized("Unauthorized", hint=AUTH_HINT)
        throttle = app_state(request.app).auth_throttle
        address = request.client.host if request.client is not None else "unknown"
        wait = throttle.retry_after(address)
        if wait is not None:
            raise TooManyFailedAuthentications(
                f"Too many wrong API keys from this address; retry in {wait} s", retry_after=wait
            )
        # A transaction of its own, ended at once: the connection goes back to the pool while the request reads
        # its body or waits for its next step, instead of being held from authentication to the response.
        with transaction(session):
            keyed = key_of(session, credentials.credentials)
        if keyed is None:
            throttle.failed(address)
            raise Unauthorized("Unauthorized", hint=AUTH_HINT)
        user, key = keyed
        if key_use_due(key):
            _note_use(session, note_key_use, key.id)
        return Caller(user)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("Unauthorized", hint=AUTH_HINT)
    with transaction(session):
        signed_in = user_of_session(session, settings, token)
    if signed_in is None:
        raise Unauthorized("Unauthorized", hint=AUTH_HINT)
    if request.method not in SAFE_METHODS and not csrf_matches(token, request.headers.get(CSRF_HEADER)):
        raise Forbidden(CSRF_REFUSED)
    signed_in_user, user_session = signed_in
    if session_use_due(user_session):
        _note_use(session, note_session_use, user_session.id)
    return Caller(signed_in_user, user_session, token)


CallerDep = Annotated[Caller, Depends(get_caller)]


def get_current_user(caller: CallerDep) -> User:
    return caller.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def find(session: Session, model: type[T], row_id: str) -> T | None:
    """The row with this id, or None; an id with a NUL byte matches nothing (PostgreSQL refuses it in text)."""
    return None if "\x00" in row_id else session.get(model, row_id)


def get_owned_album(album_id: Annotated[str, Path(alias="albumId")], user: CurrentUser, session: SessionDep) -> Album:
    album = find(session, Album, album_id)
    if album is None:
        raise NotFound("Album not found")
    if album.owner_id != user.id:
        raise Forbidden("You do not own this album")
    return album


OwnedAlbum = Annotated[Album, Depends(get_owned_album)]


def get_owned_image(image_id: Annotated[str, Path(alias="imageId")], user: CurrentUser, session: SessionDep) -> Image:
    image = find(session, Image, image_id)
    album = session.get(Album, image.album_id) if image is not None else None
    if image is None or album is None or album.owner_id != user.id:
        raise NotFound("Image not found")
    return image


OwnedImage = Annotated[Image, Depends(get_owned_image)]


def get_owned_job(
    job_id: Annotated[str, Path(alias="jobId")], user: CurrentUser, session: SessionDep
) -> EnhancementJob:
    job = find(session, EnhancementJob, job_id)
    if job is None or job.user_id != user.id:
        raise NotFound("Job not found")
    return job


OwnedJob = Annotated[EnhancementJob, Depends(get_owned_job)]


def get_owned_batch(batch_id: Annotated[str, Path(alias="batchId")], user: CurrentUser, session: SessionDep) -> Batch:
    batch = find(session, Batch, batch_id)
    if batch is None or batch.user_id != user.id:
        raise NotFound("Batch not found")
    return batch


OwnedBatch = Annotated[Batch, Depends(get_owned_batch)]


def get_owned_webhook(
    endpoint_id: Annotated[str, Path(alias="webhookId")], user: CurrentUser, session: SessionDep
) -> WebhookEndpoint:
    return webhooks.owned_endpoint(session, user.id, endpoint_id)


OwnedWebhook = Annotated[WebhookEndpoint, Depends(get_owned_webhook)]


def get_webhook_launcher(request: Request) -> WebhookLauncher:
    launcher = app_state(request.app).webhooks
    if launcher is None:
        raise RuntimeError("the application was started without a webhook launcher")
    return launcher


WebhookLauncherDep = Annotated[WebhookLauncher, Depends(get_webhook_launcher)]


ENHANCE_FIELDS = tuple(str(field.alias) for field in EnhanceRequest.model_fields.values())


async def parse_enhance_request(request: Request) -> EnhanceRequest:
    """Parse the enhance body after authentication, so the contract's validation order holds.

    The body is at most MAX_JSON_BYTES (BodySizeLimit). Unknown fields are refused rather than ignored: a
    misspelt `skipAlreadyEnhanced` would otherwise silently re-enhance, and charge for, every image.
    """
    try:
        payload = await request.json()
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser allows
        raise InvalidRequest("Request body must be valid JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("Request body must be a JSON object")
    unknown = sorted(str(name)[:50] for name in payload if name not in ENHANCE_FIELDS)
    if unknown:
        named = ", ".join(unknown[:5]) + (", …" if len(unknown) > 5 else "")
        raise InvalidRequest(f"Unknown field(s) in request body: {named}. Allowed: {', '.join(ENHANCE_FIELDS)}")
    try:
        return EnhanceRequest.model_validate(payload)
    except ValidationError as exc:
        fields = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
        if "tier" in fields:
            raise InvalidRequest("Invalid tier. Must be one of: TIER_1K, TIER_2K, TIER_4K") from exc
        if "imageIds" in fields:
            raise InvalidRequest(IMAGE_IDS_RULE) from exc
        if "outputFormat" in fields:
            formats = ", ".join(OutputFormat)
            raise InvalidRequest(f"Invalid outputFormat. Must be one of: {formats}") from exc
        if "keepLocation" in fields:
            raise InvalidRequest("keepLocation must be a boolean") from exc
        if "callbackUrl" in fields:
            raise InvalidRequest("callbackUrl must be a URL (a string of at most 2000 characters)") from exc
        raise InvalidRequest("skipAlreadyEnhanced must be a boolean") from exc


EnhanceBody = Annotated[EnhanceRequest, Depends(parse_enhance_request)]
