"""ASGI guards that refuse work cleanly before it starts: oversized bodies (413) and saturation (503); and the
health probes' own threads."""

import asyncio
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SATURATED = "Server busy; retry shortly"


async def send_json_error(send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer with the API's error shape without going through the application."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# The one route that takes files; any other body is JSON, whatever its Content-Type claims.
UPLOAD_PATH = re.compile(r"^/api/albums/[^/]+/images$")


@dataclass(frozen=True)
class BodyLimits:
    """Multipart uploads to the upload route may be large; every other body is small."""

    upload_bytes: int
    other_bytes: int

    def for_scope(self, scope: Scope) -> int:
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        is_upload = content_type.lower().startswith(b"multipart/form-data") and UPLOAD_PATH.match(scope["path"])
        return self.upload_bytes if is_upload else self.other_bytes


class BodySizeLimit:
    """413 for a declared Content-Length over the limit; a streamed body is cut off once it passes it."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limits.for_scope(scope)
        message = f"Request body too large (limit {max_bytes} bytes)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await send_json_error(send, 413, message)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message_in = await receive()
            if message_in["type"] == "http.request":
                received += len(message_in.get("body", b""))
                if received > max_bytes:
                    # An HTTPException, because the framework turns other body-parsing errors into 400s.
                    raise HTTPException(status_code=413, detail=message)
            return message_in

        await self.app(scope, limited_receive, send)


class AdmissionGate:
    """Serve at most `limit` requests at once; one that waits longer than `timeout` for a slot gets 503.

    The limit equals the thread count of sync routes and fits in the connection pool, so an admitted request
    never waits long for a thread or a connection, and a saturated replica answers at once instead of hanging.
    """

    def __init__(self, app: ASGIApp, limit: int, timeout: float, exempt: frozenset[str]) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self.exempt = exempt
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)  # created on the server's own event loop
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            await send_json_error(send, 503, SATURATED, [(b"retry-after", b"1")])
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()


class HealthLimiters:
    """One thread per blocking check, apart from the threads of the routes, so saturation cannot starve a probe
    (and the database check uses at most the one connection kept for it)."""

    def __init__(self) -> None:
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    async def run(self, name: str, fn: Callable[[], None]) -> None:
        limiter = self._limiters.setdefault(name, anyio.CapacityLimiter(1))
        await anyio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=True)
