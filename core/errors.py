"""Domain errors; the API maps each class to an HTTP status in one handler."""

from typing import Any


class DomainError(Exception):
    """Base of all expected, user-facing errors."""

    def __init__(self, message: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class InvalidRequest(DomainError):
    """The request is malformed or breaks a rule of the contract."""


class Unauthorized(DomainError):
    """No valid API key was presented."""


class Forbidden(DomainError):
    """The resource belongs to someone else."""


class NotFound(DomainError):
    """The resource does not exist (or is not visible to the caller)."""


class InsufficientTokens(DomainError):
    """The user's balance does not cover the cost."""


class Conflict(DomainError):
    """The resource is in a state that does not allow the operation."""


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key was sent again with a different request body."""


class RateLimited(DomainError):
    """The caller sent too many requests in the current window."""


class BatchStartFailed(DomainError):
    """The batch was charged but could not be started; its tokens were refunded."""


class ServiceUnavailable(DomainError):
    """A dependency of the request could not be reached, or the service is too busy for it now: retry later."""
