"""Long-lived requests (event streams, downloads, bodies still arriving) have budgets of their own: they never take
a replica's admission slots from short requests, and each kind is capped per replica (503) and per user (429).
Every test holds its connections open on purpose (raw sockets) and waits for the server to count them."""

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

from sqlmodel import Session

from api.limits import BODIES, EVENTS
from api.state import app_state
from db.models import Batch, BatchStatus, EnhancementJob, Tier
from db.session import session_scope
from storage.local import LocalStorage
from tests.conftest import LiveServer, engine_for, make_settings, wait_until
from tests.factories import UserWithKey, jpeg_bytes, make_album_with_images, make_pending_job, make_user
from tests.reliability.processes import busy_cores

SOCKET_TIMEOUT = 60.0


class RawClient:
    """Hand-written HTTP/1.1 requests on sockets the test keeps open as long as it likes."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.sockets: list[socket.socket] = []

    def send(self, head: str, body: bytes = b"") -> socket.socket:
        sock = socket.create_connection(self.address, timeout=SOCKET_TIMEOUT)
        self.sockets.append(sock)
        sock.sendall(head.encode() + b"\r\n" + body)
        return sock

    def close_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


@contextlib.contextmanager
def raw_client(base_url: str) -> Iterator[RawClient]:
    client = RawClient(base_url)
    try:
        yield client
    finally:
        client.close_all()


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    """Everything the server sent up to and including `marker` (or until it closed the connection)."""
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def status_and_json(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """A whole small response: its status and JSON body."""
    data = read_until(sock, b"\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split(b" ")[1]), json.loads(body)


def events_head(batch_id: str, user: UserWithKey) -> str:
    return f"GET /api/batches/{batch_id}/events HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {user.api_key}\r\n"


def upload_head(album: str, user: UserWithKey, length: int) -> str:
    return (
        f"POST /api/albums/{album}/images HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {user.api_key}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n"
    )


def paused_batch(db_url: str, storage: LocalStorage) -> tuple[UserWithKey, str, str]:
    """A user, their album, and a batch of it that is paused: its event stream could stay open for ever."""
    engine = engine_for(db_url)
    user, album, [image] = make_album_with_images(engine, storage, 1)
    job_id = make_pending_job(engine, user, album, image, Tier.TIER_1K)
    with session_scope(engine) as session:
        batch_id = session.get_one(EnhancementJob, job_id).batch_id
        session.get_one(Batch, batch_id).status = BatchStatus.PAUSED
    return user, album, batch_id


def end_batch(db_url: str, batch_id: str) -> None:
    """Leave no unfinished batch behind."""
    with Session(engine_for(db_url)) as session:
        session.get_one(Batch, batch_id).status = BatchStatus.CANCELLED
        for job in session.query(EnhancementJob).filter_by(batch_id=batch_id):
            job.status = "CANCELLED"
        session.commit()


def test_64_streams_and_64_slow_bodies_leave_short_requests_served(db_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(
        db_url,
        storage,
        events_per_user=64,
        bodies_per_user=64,
        events_poll_seconds=2.0,  # 64 streams reading the database on two busy cores
        request_body_timeout_seconds=600,  # the bodies stay open for the whole test, however slow the machine
    )
    user, album, batch_id = paused_batch(db_url, storage)
    bystander = make_user(engine_for(db_url))
    with LiveServer(settings) as api, raw_client(api.base_url) as raw, busy_cores():
        budgets = app_state(api.app).budgets
        for _ in range(64):
            # The gate: the stream has started (its response headers and first line came back).
            assert b"retry:" in read_until(raw.send(events_head(batch_id, user)), b"retry:")
        for _ in range(64):
            raw.send(upload_head(album, user, 100_000), b"--b\r\n")  # 5 of 100 000 bytes, then nothing
        wait_until(lambda: budgets.in_use(BODIES) == 64, timeout=60)
        assert budgets.in_use(EVENTS) == 64
        for _ in range(20):
            me = api.http.get("/api/me", headers=bystander.headers)
            assert me.status_code == 200, me.text
        # A short request with a body of its own is received and served too.
        created = api.http.post("/api/albums", headers=bystander.headers, json={"name": "Bystander"})
        assert created.status_code == 201, created.text
        assert budgets.in_use(BODIES) == 64 and budgets.in_use(EVENTS) == 64  # all still held open
        raw.close_all()
        wait_until(lambda: budgets.in_use(BODIES) == 0 and budgets.in_use(EVENTS) == 0, timeout=60)
    end_batch(db_url, batch_id)


def test_streams_are_capped_per_user_with_429_and_per_replica_with_503(sqlite_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(sqlite_url, storage, events_per_user=2, events_per_replica=3)
    user, _, batch_id = paused_batch(sqlite_url, storage)
    second_user, _, second_batch = paused_batch(sqlite_url, storage)
    other = make_user(engine_for(sqlite_url))
    with LiveServer(settings) as api, raw_client(api.base_url) as raw:
        budgets = app_state(api.app).budgets
        for _ in range(2):
            read_until(raw.send(events_head(batch_id, user)), b"retry:")
        third = api.http.get(f"/api/batches/{batch_id}/events", headers=user.headers)
        assert third.status_code == 429
        assert third.json() == {"error": "Too many open event streams (at most 2); close one first"}
        # A stream the server refuses (another user's batch) is counted only while it is answered.
        assert status_and_json(raw.send(events_head(batch_id, other)))[0] == 404
        wait_until(lambda: budgets.in_use(EVENTS) == 2)
        # The third open stream of the replica, from a second key; the fourth is one too many for the replica.
        read_until(raw.send(events_head(second_batch, second_user)), b"retry:")
        wait_until(lambda: budgets.in_use(EVENTS) == 3)
        full = api.http.get(f"/api/batches/{batch_id}/events", headers=other.headers)
        assert (full.status_code, full.json()) == (503, {"error": "Server busy; retry shortly"})
        assert full.headers["Retry-After"] == "1"
        assert api.http.get("/api/me", headers=other.headers).status_code == 200
        raw.close_all()
        wait_until(lambda: budgets.in_use(EVENTS) == 0)
        with api.http.stream("GET", f"/api/batches/{batch_id}/events", headers=user.headers) as again:
            assert again.status_code == 200
    end_batch(sqlite_url, batch_id)
    end_batch(sqlite_url, second_batch)


def test_a_body_that_does_not_arrive_in_time_is_408_and_a_whole_one_is_not(sqlite_url: str, tmp_path: Path) -> None:
    """On cores saturated by busy loops: the deadline cuts off the trickled body, and only that one."""
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(sqlite_url, storage, request_body_timeout_seconds=2, bodies_per_user=2)
    user, album, _ = make_album_with_images(engine_for(sqlite_url), storage, 0)
    with LiveServer(settings) as api, raw_client(api.base_url) as raw, busy_cores():
        slow = raw.send(upload_head(album, user, 10_000), b"--b\r\n")
        photo = ("files", ("a.jpg", jpeg_bytes(640, 480), "image/jpeg"))
        whole = api.http.post(f"/api/albums/{album}/images", headers=user.headers, files=[photo])
        assert whole.status_code == 201, whole.text
        # The server waits for the rest of the trickled body for its deadline, then answers whatever the client does.
        status, body = status_and_json(slow)
        assert status == 408
        assert body == {"error": "Request body not received in time; send it faster or in smaller uploads"}
    assert len(list((storage.root / "originals").rglob("*.jpeg"))) == 1


def test_one_user_sending_too_many_bodies_at_once_gets_429(sqlite_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(sqlite_url, storage, bodies_per_user=2)
    user, album, _ = make_album_with_images(engine_for(sqlite_url), storage, 0)
    with LiveServer(settings) as api, raw_client(api.base_url) as raw:
        for _ in range(2):
            raw.send(upload_head(album, user, 10_000), b"--b\r\n")
        budgets = app_state(api.app).budgets
        wait_until(lambda: budgets.in_use(BODIES) == 2)
        third = api.http.post("/api/albums", headers=user.headers, json={"name": "x"})
        assert third.status_code == 429
        assert third.json() == {"error": "Too many open request bodies being sent (at most 2); close one first"}
        other = make_user(engine_for(sqlite_url))
        assert api.http.post("/api/albums", headers=other.headers, json={"name": "x"}).status_code == 201


def test_a_stream_of_a_paused_batch_keeps_alive_then_ends_at_its_lifetime(sqlite_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(
        sqlite_url, storage, events_poll_seconds=0.05, events_keepalive_seconds=0.1, events_max_seconds=0.5
    )
    user, _, batch_id = paused_batch(sqlite_url, storage)
    with LiveServer(settings) as api:
        with api.http.stream("GET", f"/api/batches/{batch_id}/events", headers=user.headers) as response:
            lines = list(response.iter_lines())  # ends by itself: the server closes it
        assert ": keep-alive" in lines
        last_id = [line for line in lines if line.startswith("id: ")][-1].removeprefix("id: ")
        assert last_id == "P.P"
        # Reconnecting with the last id: nothing new to say, only keep-alives until the lifetime again.
        with api.http.stream(
            "GET", f"/api/batches/{batch_id}/events", headers={**user.headers, "Last-Event-ID": last_id}
        ) as again:
            assert not [line for line in again.iter_lines() if line.startswith("event:")]
    end_batch(sqlite_url, batch_id)
