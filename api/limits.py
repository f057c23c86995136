"""ASGI guards that refuse work cleanly before it starts: oversized bodies (413), slow bodies (408), saturation
(503), too many long-lived requests of one caller (429); and the health probes' own threads.

Two kinds of budget (docs/reliability.md): short requests share the admission slots (AdmissionGate), which bound
the threads and database connections in use; what may last long — a request body still arriving, an event
stream, a download — has a budget of its own per replica and per caller, and holds no admission slot while it
waits on the network.
"""

import asyncio
import hashlib
import json
import math
import re
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SATURATED = "Server busy; retry shortly"
BODY_TOO_SLOW = "Request body not received in time; send it faster or in smaller uploads"


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


@dataclass(frozen=True)
class Cap:
    """How many of one kind of long-lived request may be open at once, per replica and per caller."""

    per_replica: int
    per_caller: int


class LongLivedBudgets:
    """The open long-lived requests of this replica, by kind and by caller, against their caps.

    A caller is its API key (a digest of the Authorization header), or its address without one: the budgets act
    before authentication, so an unauthenticated flood is bounded too. Only the event loop touches the counts.
    """

    def __init__(self, caps: dict[str, Cap]) -> None:
        self.caps = caps
        self._open: Counter[str] = Counter()
        self._by_caller: Counter[tuple[str, str]] = Counter()

    def in_use(self, kind: str) -> int:
        return self._open[kind]

    def refusal(self, kind: str, caller: str) -> tuple[int, str] | None:
        """Why another request of this kind cannot be opened now (status, message), or None if it can."""
        cap = self.caps[kind]
        if self._by_caller[kind, caller] >= cap.per_caller:
            return 429, f"Too many open {LONG_LIVED_NAMES[kind]} (at most {cap.per_caller}); close one first"
        if self._open[kind] >= cap.per_replica:
            return 503, SATURATED
        return None

    def take(self, kind: str, caller: str) -> Callable[[], None]:
        """Count one more open request; the returned function gives it back (calling it again does nothing)."""
        self._open[kind] += 1
        self._by_caller[kind, caller] += 1
        taken = True

        def give_back() -> None:
            nonlocal taken
            if taken:
                taken = False
                self._open[kind] -= 1
                self._by_caller[kind, caller] -= 1
                if not self._by_caller[kind, caller]:
                    del self._by_caller[kind, caller]

        return give_back

    @contextmanager
    def held(self, kind: str, caller: str) -> Iterator[None]:
        give_back = self.take(kind, caller)
        try:
            yield
        finally:
            give_back()


# The kinds of long-lived request, and how an error names them.
BODIES, EVENTS, DOWNLOADS, ZIPS = "bodies", "events", "downloads", "zips"
LONG_LIVED_NAMES = {
    BODIES: "request bodies being sent",
    EVENTS: "event streams",
    DOWNLOADS: "downloads",
    ZIPS: "zip downloads",
}
_RESPONSE_KINDS = (
    (re.compile(r"^/api/batches/[^/]+/events$"), EVENTS),
    (re.compile(r"^/api/albums/[^/]+/results\.zip$"), ZIPS),
    (re.compile(r"^/api/(jobs/[^/]+/result|images/[^/]+/original)$"), DOWNLOADS),
)


def long_response_kind(scope: Scope) -> str | None:
    """The kind of a request whose response may last long (a stream, a download), or None for a short one."""
    if scope["method"] not in ("GET", "HEAD"):
        return None
    return next((kind for pattern, kind in _RESPONSE_KINDS if pattern.match(scope["path"])), None)


def caller_of(scope: Scope) -> str:
    """Who is asking, for the per-caller caps: a digest of the credentials, else the client address."""
    authorization = dict(scope["headers"]).get(b"authorization")
    if authorization:
        return "key:" + hashlib.sha256(authorization).hexdigest()[:32]
    client = scope.get("client")
    return f"address:{client[0] if client else '?'}"


async def _refuse(send: Send, refusal: tuple[int, str]) -> None:
    status, message = refusal
    await send_json_error(send, status, message, [(b"retry-after", b"1")])


class AdmissionGate:
    """Serve at most `limit` requests at once; one that waits longer than `timeout` for a slot gets 503.

    The limit equals the thread count of sync routes and fits in the connection pool, so an admitted request
    never waits long for a thread or a connection, and a saturated replica answers at once instead of hanging.
    A stream or a download is admitted for its checks (authentication, ownership) and gives its slot back once
    its response has started; from then on it counts only against its own cap in `budgets`.
    """

    def __init__(
        self, app: ASGIApp, limit: int, timeout: float, exempt: frozenset[str], budgets: LongLivedBudgets
    ) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self.exempt = exempt
        self.budgets = budgets
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        kind = long_response_kind(scope)
        if kind is None:
            await self._admitted(scope, receive, send, release_on_start=False)
            return
        caller = caller_of(scope)
        refusal = self.budgets.refusal(kind, caller)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        give_back = self.budgets.take(kind, caller)

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                give_back()  # before the last bytes leave: a client may ask again the moment it has them
            await send(message)

        try:
            await self._admitted(scope, receive, counted_send, release_on_start=True)
        finally:
            give_back()

    async def _admitted(self, scope: Scope, receive: Receive, send: Send, release_on_start: bool) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)  # created on the server's own event loop
        slots = self._slots
        try:
            async with asyncio.timeout(self.timeout):
                await slots.acquire()
        except TimeoutError:
            await send_json_error(send, 503, SATURATED, [(b"retry-after", b"1")])
            return
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        async def releasing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()  # the rest of the response waits on the client, not on this replica
            await send(message)

        try:
            await self.app(scope, receive, releasing_send if release_on_start else send)
        finally:
            release()


@dataclass(frozen=True)
class BodyDeadline:
    """A body must arrive within `seconds` plus the time it takes at `min_bytes_per_second`."""

    seconds: float
    min_bytes_per_second: int

    def allowed(self, received: int) -> float:
        return self.seconds + received / self.min_bytes_per_second


_REPLAY_CHUNK = 64 * 1024
_IN_MEMORY_BODY = 256 * 1024


class BodyReceiver:
    """Receive a request's whole body before the request asks for an admission slot.

    A body that trickles in (slowloris) holds only a body slot of its own budget, never an admission slot, a
    thread or a database connection, and is cut off with 408 once it is later than its deadline. Bodies are
    spooled (in memory up to 256 KB, then to a temporary file) and handed to the application as if they had just
    arrived. A body over its size limit (BodySizeLimit, outside this) is refused with 413 as it arrives.
    """

    def __init__(self, app: ASGIApp, deadline: BodyDeadline, budgets: LongLivedBudgets) -> None:
        self.app = app
        self.deadline = deadline
        self.budgets = budgets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        caller = caller_of(scope)
        refusal = self.budgets.refusal(BODIES, caller)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BODY) as body:
            with self.budgets.held(BODIES, caller):
                outcome = await self._receive_into(body, receive)
            if outcome is None:
                return  # the client went away
            if outcome != "ok":
                await send_json_error(send, *outcome)
                return
            body.seek(0)
            await self.app(scope, _replay(body, receive), send)

    async def _receive_into(self, body: IO[bytes], receive: Receive) -> str | tuple[int, str] | None:
        started, received = time.monotonic(), 0
        while True:
            left = started + self.deadline.allowed(received) - time.monotonic()
            try:
                async with asyncio.timeout(max(left, 0.0)):
                    message = await receive()
            except TimeoutError:
                return 408, BODY_TOO_SLOW
            except HTTPException as exc:  # BodySizeLimit: the body passed its limit
                return exc.status_code, str(exc.detail)
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            received += len(chunk)
            body.write(chunk)
            if not message.get("more_body", False):
                return "ok"


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    return headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers


def _replay(body: IO[bytes], receive: Receive) -> Receive:
    """The spooled body as the messages the application expects, then the connection's own (a disconnect)."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if done:
            return await receive()
        chunk = body.read(_REPLAY_CHUNK)
        more = body.tell() < _end_of(body)
        done = not more
        return {"type": "http.request", "body": chunk, "more_body": more}

    return replay


def _end_of(body: IO[bytes]) -> int:
    position = body.tell()
    end = body.seek(0, 2)
    body.seek(position)
    return end


class HealthLimiters:
    """One thread per blocking check, apart from the threads of the routes, so saturation cannot starve a probe
    (and the database check uses at most the one connection kept for it)."""

    def __init__(self) -> None:
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    async def run(self, name: str, fn: Callable[[], None]) -> None:
        limiter = self._limiters.setdefault(name, anyio.CapacityLimiter(1))
        await anyio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=True)


class FailedAuthThrottle:
    """Wrong API keys per client address in a sliding window: past `limit` of them, the address is refused
    (429) until the oldest leaves the window, before any key is looked up. Keys are 256 bits, so guessing is moot;
    this keeps a key-spraying client from loading the logs and the database. Per replica, in memory."""

    MAX_ADDRESSES = 10_000  # the oldest address is forgotten beyond this: memory stays bounded

    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int | None:
        """Seconds until the address may try again, or None if it may now."""
        with self._lock:
            failures = self._recent(address)
            if failures is None or len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window - self.clock()))

    def failed(self, address: str) -> None:
        with self._lock:
            failures = self._recent(address)
            if failures is None:
                if len(self._failures) >= self.MAX_ADDRESSES:
                    del self._failures[next(iter(self._failures))]
                failures = self._failures[address] = deque()
            failures.append(self.clock())

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is not None:
            while failures and failures[0] <= self.clock() - self.window:
                failures.popleft()
        return failures
