"""Maps domain errors (and framework errors) to JSON `{"error": ...}` responses, in one place."""

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    BatchStartFailed,
    Conflict,
    DomainError,
    Forbidden,
    IdempotencyKeyReused,
    InsufficientTokens,
    InvalidRequest,
    NotFound,
    RateLimited,
    RateLimitState,
    ServiceUnavailable,
    TooManyFailedAuthentications,
    Unauthorized,
)

log = logging.getLogger(__name__)

STATUS_OF: dict[type[DomainError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    InsufficientTokens: 402,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    IdempotencyKeyReused: 422,
    RateLimited: 429,
    TooManyFailedAuthentications: 429,
    BatchStartFailed: 500,
    ServiceUnavailable: 503,
}


def status_of(error: DomainError) -> int:
    """The HTTP status of a domain error."""
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def _describe(errors: Sequence[Any]) -> str:
    first = errors[0] if errors else {}
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"Invalid request: {location or 'body'}: {first.get('msg', 'invalid value')}"


def error_body(error: DomainError) -> dict[str, Any]:
    """The JSON body of a domain error: its message and the facts it carries."""
    return {"error": error.message, **error.extra}


def rate_limit_headers(window: RateLimitState) -> dict[str, str]:
    """The X-RateLimit-* headers describing a caller's window."""
    return {
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(window.remaining),
        "X-RateLimit-Reset": str(window.reset_epoch),
    }


# Marks a stored answer given again for an Idempotency-Key.
REPLAYED_HEADERS = {"Idempotent-Replayed": "true"}


def error_headers(error: DomainError) -> dict[str, str]:
    """The headers that carry a domain error's facts."""
    headers: dict[str, str] = {}
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, RateLimited):
        headers |= rate_limit_headers(error.window)
    if error.replayed:
        headers |= REPLAYED_HEADERS
    return headers


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return JSONResponse(error_body(exc), status_code=status_of(exc), headers=error_headers(exc))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return JSONResponse({"error": _describe(exc.errors()), "details": details}, status_code=400)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


# Retry soon: the pool frees up within milliseconds, and a database outage is for the readiness probe to report.
DATABASE_RETRY_AFTER = "1"


async def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    log.warning("no database connection within the pool timeout on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": "Database busy; retry shortly"}, status_code=503, headers={"Retry-After": DATABASE_RETRY_AFTER}
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The driver's message can name hosts and users: it goes to the log, not to the caller.
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"error": "Database unavailable; retry shortly"},
        status_code=503,
        headers={"Retry-After": DATABASE_RETRY_AFTER},
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    # Close the connection: the server drops it after an unexpected error anyway.
    return JSONResponse({"error": "Internal server error"}, status_code=500, headers={"Connection": "close"})


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into a JSON body."""
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sa_exc.TimeoutError, _database_busy)  # the pool's, not a statement's
    for unavailable in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError):
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
