"""Domain errors; the API maps each class to an HTTP status, and their facts to headers, in one handler."""

from dataclasses import dataclass
from typing import Any


class DomainError(Exception):
    """Base of all expected, user-facing errors: a message and the facts (`extra`) the caller is told with it.

    `retry_after` (seconds) says when trying again may succeed; `replayed` marks the stored answer of an earlier
    request with the same Idempotency-Key, given again."""

    def __init__(self, message: str, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.replayed = False
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


@dataclass(frozen=True)
class RateLimitState:
    """A caller's rate-limit window: its limit, the requests left, and when the oldest counted one leaves it."""

    limit: int
    remaining: int
    reset_epoch: int  # when the oldest counted request leaves the window, i.e. the next slot frees up


class RateLimited(DomainError):
    """The caller sent too many requests in the current window."""

    def __init__(self, message: str, window: RateLimitState, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after, retryAfter=retry_after)
        self.window = window


class TooManyFailedAuthentications(DomainError):
    """Too many wrong API keys came from one client address lately: its requests are refused for a while."""


class BatchStartFailed(DomainError):
    """The batch was charged but could not be started; its tokens were refunded."""


class ServiceUnavailable(DomainError):
    """A dependency of the request could not be reached, or the service is too busy for it now: retry later."""


class StartupRefused(Exception):
    """A process must not start as configured (schema out of date, storage not shared); the message says why."""
