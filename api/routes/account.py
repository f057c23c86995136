"""The caller's account: its sessions, its API keys, the export of its data, and its deletion."""

from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Response, status
from fastapi.responses import StreamingResponse

from api.account_schemas import (
    AccountOut,
    DeleteAccountIn,
    KeyIn,
    KeyOut,
    KeysOut,
    NewKeyOut,
    PasswordChangeIn,
    SessionOut,
    SessionsOut,
)
from api.deps import CallerDep, SessionDep, SettingsDep, StorageDep
from api.routes.auth import account_out, clear_session_cookies
from api.schemas import ErrorOut
from db.session import transaction
from services import account_data, accounts, users
from services.deletion import remove_objects

router = APIRouter(prefix="/account", tags=["account"])

_CHUNK = 256 * 1024


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in codes}


@router.get("", response_model=AccountOut, responses=_errors(401))
def read_account(caller: CallerDep) -> AccountOut:
    """The caller's email, balance, whether the email is confirmed and whether the account has a password."""
    return account_out(caller.user, caller.session.id if caller.session is not None else None)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, responses=_errors(400, 401, 403))
def change_password(body: PasswordChangeIn, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> Response:
    """Change the password with the current one: every other signed-in browser is signed out, this one stays."""
    keep = caller.session.id if caller.session is not None else None
    accounts.change_password(session, settings, caller.user, body.current_password, body.new_password, keep)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sessions", response_model=SessionsOut, responses=_errors(401))
def list_sessions(caller: CallerDep, session: SessionDep) -> SessionsOut:
    """The signed-in browsers of the account, the most recently used first."""
    current = caller.session.id if caller.session is not None else None
    rows = accounts.list_sessions(session, caller.user.id)
    return SessionsOut(
        sessions=[SessionOut.model_validate(row).model_copy(update={"current": row.id == current}) for row in rows]
    )


@router.delete("/sessions/{sessionId}", status_code=status.HTTP_204_NO_CONTENT, responses=_errors(401, 403, 404))
def revoke_session(sessionId: str, caller: CallerDep, session: SessionDep) -> Response:  # noqa: N803 (the path's name)
    """Sign one browser out: its next request is refused."""
    accounts.end_session_by_id(session, caller.user.id, sessionId)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    if caller.session is not None and caller.session.id == sessionId:
        clear_session_cookies(response)
    return response


@router.post("/sessions/revoke-all", status_code=status.HTTP_204_NO_CONTENT, responses=_errors(401, 403))
def sign_out_everywhere(caller: CallerDep, session: SessionDep) -> Response:
    """Sign out every browser of the account, this one included (API keys stay: revoke them one by one)."""
    accounts.end_all_sessions(session, caller.user.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response


@router.get("/keys", response_model=KeysOut, responses=_errors(401))
def list_keys(caller: CallerDep, session: SessionDep) -> KeysOut:
    """The account's API keys (names and dates; a key itself is shown only when it is made)."""
    return KeysOut(keys=[KeyOut.model_validate(key) for key in users.list_keys(session, caller.user.id)])


@router.post(
    "/keys", response_model=NewKeyOut, status_code=status.HTTP_201_CREATED, responses=_errors(400, 401, 403, 409)
)
def create_key(body: KeyIn, caller: CallerDep, session: SessionDep) -> NewKeyOut:
    """A new named API key, for scripts and the REST clients: copy it now, it is never shown again."""
    with transaction(session):
        key, row = users.create_key(session, caller.user.id, body.name)
    return NewKeyOut(id=row.id, name=row.name, created_at=row.created_at, last_used_at=None, key=key)


@router.delete("/keys/{keyId}", status_code=status.HTTP_204_NO_CONTENT, responses=_errors(401, 403, 404))
def revoke_key(keyId: str, caller: CallerDep, session: SessionDep) -> Response:  # noqa: N803 (the path's name)
    """Revoke a key: refused from its next request on."""
    with transaction(session):
        users.revoke_key(session, caller.user.id, keyId)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "originals/, results/ (one folder per album), ledger.csv",
        },
        401: {"model": ErrorOut},
    },
)
async def export(caller: CallerDep, session: SessionDep, storage: StorageDep) -> StreamingResponse:
    """Everything of the account in one zip: every original, every stored result, and the token ledger as CSV."""
    files = await anyio.to_thread.run_sync(account_data.export_files, session, caller.user.id)
    ledger = await anyio.to_thread.run_sync(account_data.ledger_csv, session, caller.user.id)
    archive = await anyio.to_thread.run_sync(account_data.write_export, storage, files, ledger)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await anyio.to_thread.run_sync(archive.read, _CHUNK):
                yield chunk
        finally:
            archive.close()

    return StreamingResponse(
        chunks(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="album-enhance-export.zip"'},
    )


@router.post("/delete", status_code=status.HTTP_204_NO_CONTENT, responses=_errors(400, 401, 403, 409))
def delete_account(
    body: DeleteAccountIn, caller: CallerDep, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> Response:
    """Delete the account: every photo, result and thumbnail leaves storage, every session and key is revoked,
    and the ledger and batches stay, anonymised. Confirmed with the password (or, without one, the email). 409
    while a batch of the account is running."""
    account_data.check_deletion(caller.user, body.password, body.email)
    keys = account_data.delete_account(session, caller.user.id, settings.thumbnail_size)
    remove_objects(storage, keys)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response
