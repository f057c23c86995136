"""Load benchmark of the HTTP API on PostgreSQL: `python -m bench.api` (a few minutes).

One API replica (uvicorn in a subprocess, default settings) against a throwaway PostgreSQL database that this
script creates and drops, and an in-memory Temporal dev server (subprocess) with no worker: enhance requests are charged
and their workflows started, nothing is processed, so the figures are those of the API path alone.

Closed-loop clients at each concurrency send GET /api/me, GET /api/batches/{id} and POST …/enhance for a few
seconds each, over keep-alive connections of a minimal HTTP/1.1 client (cheaper than a full client library,
so the load generator leaves the cores to the server; its own CPU is reported). Every 5xx other than the
deliberate 503 (saturation, with Retry-After) and every timeout is counted; the run fails if there is one.

A second part measures GET /api/me at concurrency 8 while a hostile client uploads in a loop, interleaved
with runs without it: 50 PNGs of about 175 KB each declaring 59.99 MP (refused from the headers), and 3 such
PNGs (180 MP, within the per-upload budget, so really decoded).

A third part, "long-lived", holds open 64 event streams (each on a batch that never moves), 16 downloads of 8 MB
originals read by clients that stop reading after the first bytes, and 64 upload bodies trickled in (a few bytes
of a declared megabyte), then measures GET /api/me and POST …/enhance at concurrency 8 while they are held, and
without them. `python -m bench.api --long-lived` runs only this part (under a minute) and merges it into the
results of the last full run.

Writes bench/results/api.json and bench/results/api.md.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from bench.hostile import black_png
from bench.throwaway import throwaway_database
from core.config import Settings
from core.temporal_dev import dev_server_command, wait_for_port
from db import migrate
from db.models import Album, Image
from db.session import make_engine, session_scope
from services.users import create_user
from storage.local import LocalStorage, original_key

RESULTS = Path(__file__).parent / "results"
SERVER_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CONCURRENCY = (1, 8, 32, 128, 256)
PHASE_SECONDS = 3.0
USERS = 256
IMAGES_PER_ALBUM = 4
REQUEST_TIMEOUT = 30.0
HOSTILE_ROUNDS = 3
HUGE = (7745, 7745)  # 59.99 MP
# The long-lived part: what is held open, by distinct users (each within its per-user caps).
LONG_STREAMS, LONG_DOWNLOADS, LONG_BODIES = 64, 16, 64
BIG_ORIGINAL_BYTES = 8 * 1024 * 1024


# --- a minimal keep-alive HTTP/1.1 client ------------------------------------------------------------------


def raw_request(method: str, path: str, key: str | None = None, body: bytes = b"", content_type: str = "") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    if body or method == "POST":
        head += [f"Content-Type: {content_type or 'application/json'}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> int:
        """Send one request and read its whole answer; return the status."""
        return (await self.exchange(raw))[0]

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request; return the status and body of its answer."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --- measuring ---------------------------------------------------------------------------------------------


def cpu_seconds_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    timeouts: int = 0
    connection_errors: int = 0

    def summary(self, wall: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        unexpected = sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)
        return {
            "requests": len(ordered),
            "rps": round(len(ordered) / wall, 1),
            "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
            "p95_ms": round(percentile(ordered, 0.95) * 1000, 2),
            "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "deliberate_503": self.statuses.get(503, 0),
            "unexpected_5xx": unexpected,
            "timeouts": self.timeouts,
            "connection_errors": self.connection_errors,
        }


async def closed_loop(
    port: int, make: Callable[[int, int], bytes], concurrency: int, seconds: float, tally: Tally
) -> None:
    """`concurrency` clients, each sending its next request as soon as the previous one is answered."""
    deadline = time.perf_counter() + seconds

    async def client(index: int) -> None:
        connection = Connection(port)
        sent = 0
        while time.perf_counter() < deadline:
            raw = make(index, sent)
            sent += 1
            started = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status = await connection.send(raw)
            except TimeoutError:
                tally.timeouts += 1
                connection.close()
                continue
            except (OSError, asyncio.IncompleteReadError):
                tally.connection_errors += 1
                connection.close()
                continue
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[status] += 1
        connection.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))


@dataclass(frozen=True)
class Stack:
    port: int
    api_pid: int
    temporal_pid: int
    users: list[tuple[str, str, str]]  # (api key, album id, batch id)


async def phase(
    stack: Stack, make: Callable[[int, int], bytes], concurrency: int, seconds: float = PHASE_SECONDS
) -> dict[str, Any]:
    tally = Tally()
    client0, api0, temporal0 = cpu_seconds_self(), cpu_seconds_of(stack.api_pid), cpu_seconds_of(stack.temporal_pid)
    started = time.perf_counter()
    await closed_loop(stack.port, make, concurrency, seconds, tally)
    wall = time.perf_counter() - started
    result = tally.summary(wall)
    result["cpu_cores"] = {
        "load_generator": round((cpu_seconds_self() - client0) / wall, 2),
        "api": round((cpu_seconds_of(stack.api_pid) - api0) / wall, 2),
        "temporal_dev_server": round((cpu_seconds_of(stack.temporal_pid) - temporal0) / wall, 2),
    }
    return result


# --- the stack -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tiny_jpeg() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), (180, 90, 40)).save(out, "JPEG")
    return out.getvalue()


def seed(database_url: str, storage: LocalStorage) -> list[tuple[str, str]]:
    """USERS users with plenty of tokens, each owning an album of IMAGES_PER_ALBUM tiny images."""
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    photo = tiny_jpeg()
    seeded = []
    with session_scope(engine) as session:
        for i in range(USERS):
            user, key = create_user(session, f"bench-{i}@example.com", 1_000_000_000, "bench:grant")
            album = Album(owner_id=user.id, name=f"bench {i}")
            session.add(album)
            session.flush()
            for position in range(IMAGES_PER_ALBUM):
                image = Image(album_id=album.id, original_key="", width=64, height=48, format="JPEG", size_bytes=0)
                image.original_key = original_key(album.id, image.id, "JPEG")
                image.size_bytes, image.sort_order = len(photo), position
                # The long-lived part's downloads: a big original for the users it reads one from.
                big = position == 0 and i in DOWNLOAD_USERS
                storage.put(image.original_key, os.urandom(BIG_ORIGINAL_BYTES) if big else photo)
                session.add(image)
            seeded.append((key, album.id))
    engine.dispose()
    return seeded


STREAM_USERS = range(0, LONG_STREAMS)
DOWNLOAD_USERS = range(LONG_STREAMS, LONG_STREAMS + LONG_DOWNLOADS)
BODY_USERS = range(LONG_STREAMS + LONG_DOWNLOADS, LONG_STREAMS + LONG_DOWNLOADS + LONG_BODIES)

ENHANCE_BODY = json.dumps({"tier": "TIER_1K", "skipAlreadyEnhanced": False}).encode()


async def first_batches(port: int, seeded: list[tuple[str, str]]) -> list[str]:
    """One charged batch per user (the target of GET /api/batches/{id}); also warms the server up."""
    batch_ids = []
    connection = Connection(port)
    for key, album in seeded:
        status, body = await connection.exchange(raw_request("POST", f"/api/albums/{album}/enhance", key, ENHANCE_BODY))
        if status != 200:
            raise RuntimeError(f"setup enhance failed: {status} {body[:200]!r}")
        batch_ids.append(json.loads(body)["batchId"])
    connection.close()
    return batch_ids


def start_in_memory_dev_server(port: int) -> subprocess.Popen[bytes]:
    """The dev server without its SQLite file: with one, every workflow start waits for a file commit and the
    dev server, not the API, sets the pace (about 20 starts/s here); a real cluster persists elsewhere."""
    command = dev_server_command(Path("unused"), port, free_port(), "default")
    at = command.index("--db-filename")
    del command[at : at + 2]
    process = subprocess.Popen(command)
    wait_for_port("127.0.0.1", port)
    return process


@contextmanager
def running_stack(database_url: str, storage_dir: Path) -> Iterator[tuple[int, int, int]]:
    temporal_port, api_port = free_port(), free_port()
    temporal = start_in_memory_dev_server(temporal_port)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "STORAGE_DIR": str(storage_dir),
        "EXECUTION_MODE": "temporal",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "TASK_QUEUE": "bench-no-worker",
        # The limiter's database path is measured, but never refuses: load, not abuse, is measured here.
        "RATE_LIMIT_REQUESTS": "1000000000",
    }
    command = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--host", "127.0.0.1"]
    command += ["--port", str(api_port), "--log-level", "warning", "--no-access-log"]
    api = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parent.parent)
    try:
        wait_for_port("127.0.0.1", api_port)
        yield api_port, api.pid, temporal.pid
    finally:
        for process in (api, temporal):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


# --- the hostile upload part ------------------------------------------------------------------------------


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for i, data in enumerate(files):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def me_during(stack: Stack, upload: bytes | None) -> dict[str, Any]:
    """GET /api/me at concurrency 8 for a phase, with a hostile client uploading in a loop meanwhile."""
    key, album, _ = stack.users[-1]
    uploads = Tally()
    peak_rss = rss_mb(stack.api_pid)
    done = asyncio.Event()

    async def hostile() -> None:
        connection = Connection(stack.port)
        while upload is not None and not done.is_set():
            started = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status = await connection.send(upload)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                uploads.connection_errors += 1
                connection.close()
                continue
            uploads.latencies.append(time.perf_counter() - started)
            uploads.statuses[status] += 1
        connection.close()

    async def sample_rss() -> None:
        nonlocal peak_rss
        while not done.is_set():
            peak_rss = max(peak_rss, rss_mb(stack.api_pid))
            await asyncio.sleep(0.05)

    def me(index: int, _: int) -> bytes:
        return raw_request("GET", "/api/me", stack.users[index][0])

    background = [asyncio.create_task(hostile()), asyncio.create_task(sample_rss())]
    result = await phase(stack, me, 8)
    done.set()
    await asyncio.gather(*background)
    wall = max(sum(uploads.latencies), 1e-9)
    result["uploads"] = uploads.summary(wall) if upload is not None else None
    result["api_peak_rss_mb"] = round(peak_rss, 1)
    return result


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


# --- the run ----------------------------------------------------------------------------------------------


async def measure(stack: Stack) -> dict[str, Any]:
    def me(index: int, _: int) -> bytes:
        return raw_request("GET", "/api/me", stack.users[index][0])

    def batch(index: int, _: int) -> bytes:
        key, _album, batch_id = stack.users[index]
        return raw_request("GET", f"/api/batches/{batch_id}", key)

    def enhance(index: int, _: int) -> bytes:
        key, album, _batch = stack.users[index]
        return raw_request("POST", f"/api/albums/{album}/enhance", key, ENHANCE_BODY)

    load: dict[str, dict[str, Any]] = {}
    for name, make in (
        ("GET /api/me", me),
        ("GET /api/batches/{id}", batch),
        ("POST /api/albums/{id}/enhance", enhance),
    ):
        load[name] = {}
        for concurrency in CONCURRENCY:
            load[name][str(concurrency)] = result = await phase(stack, make, concurrency)
            print(
                f"{name:32} c={concurrency:<4} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:7.1f}  "
                f"p99 {result['p99_ms']:7.1f} ms  {result['statuses']}  timeouts {result['timeouts']}",
                flush=True,
            )

    refused_body, refused_type = multipart([black_png(*HUGE)] * 50)
    decoded_body, decoded_type = multipart([black_png(*HUGE)] * 3)
    _, album, _ = stack.users[-1]
    key = stack.users[-1][0]
    variants = {
        "none": None,
        "50 x 59.99 MP PNG (refused from headers)": raw_request(
            "POST", f"/api/albums/{album}/images", key, refused_body, refused_type
        ),
        "3 x 59.99 MP PNG (within budget, decoded)": raw_request(
            "POST", f"/api/albums/{album}/images", key, decoded_body, decoded_type
        ),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _round in range(HOSTILE_ROUNDS):  # interleaved A/B/C, so drift hits every variant alike
        for name, upload in variants.items():
            runs[name].append(result := await me_during(stack, upload))
            print(
                f"hostile {name:45} p99 /api/me {result['p99_ms']:7.1f} ms  rss {result['api_peak_rss_mb']} MB",
                flush=True,
            )
    hostile = {
        name: {
            "me_p50_ms": spread([r["p50_ms"] for r in results]),
            "me_p99_ms": spread([r["p99_ms"] for r in results]),
            "me_rps": spread([r["rps"] for r in results]),
            "upload_p50_ms": spread([r["uploads"]["p50_ms"] for r in results]) if results[0]["uploads"] else None,
            "upload_statuses": [r["uploads"]["statuses"] for r in results] if results[0]["uploads"] else None,
            "api_peak_rss_mb": spread([r["api_peak_rss_mb"] for r in results]),
            "me_unexpected_5xx": sum(r["unexpected_5xx"] for r in results),
            "me_timeouts": sum(r["timeouts"] for r in results),
            "runs": results,
        }
        for name, results in runs.items()
    }
    return {"load": load, "hostile_upload": hostile}


# --- the long-lived part ---------------------------------------------------------------------------------


def _held(port: int, raw: bytes, answer_starts: bool, small_buffer: bool = False) -> socket.socket:
    """A connection that sent `raw` and is then left alone; with `answer_starts`, once its answer has begun (200)."""
    sock = socket.socket()
    if small_buffer:  # a slow reader: the server's writes fill this and wait
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(REQUEST_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(raw)
    if answer_starts:
        head = sock.recv(64)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"a long-lived request was refused: {head!r}")
    return sock


def _original_of_first_image(port: int, key: str, album: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(raw_request("GET", f"/api/albums/{album}", key) + b"")
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            data += sock.recv(65536)
    images = json.loads(data.split(b"\r\n\r\n", 1)[1])["images"]
    return str(images[0]["id"])


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0]
    return next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))


def open_long_lived(stack: Stack) -> list[socket.socket]:
    """Every long-lived request of the part, each from its own user, held open."""
    held = []
    for i in STREAM_USERS:
        key, _album, batch = stack.users[i]
        held.append(_held(stack.port, raw_request("GET", f"/api/batches/{batch}/events", key), answer_starts=True))
    for i in DOWNLOAD_USERS:
        key, album, _batch = stack.users[i]
        image = _original_of_first_image(stack.port, key, album)
        request = raw_request("GET", f"/api/images/{image}/original", key)
        held.append(_held(stack.port, request, answer_starts=True, small_buffer=True))
    for i in BODY_USERS:
        key, album, _batch = stack.users[i]
        head = raw_request("POST", f"/api/albums/{album}/images", key, b"", "multipart/form-data; boundary=b")
        head = head.replace(b"Content-Length: 0", b"Content-Length: 1000000")
        held.append(_held(stack.port, head + b"--b\r\n", answer_starts=False))
    return held


async def long_lived(stack: Stack) -> dict[str, Any]:
    """GET /api/me and POST …/enhance at concurrency 8, without and then with the long-lived requests held."""

    def me(index: int, _: int) -> bytes:
        return raw_request("GET", "/api/me", stack.users[-1 - index][0])

    def enhance(index: int, _: int) -> bytes:
        key, album, _batch = stack.users[-1 - index]
        return raw_request("POST", f"/api/albums/{album}/enhance", key, ENHANCE_BODY)

    results: dict[str, Any] = {}
    for held_open in (False, True):
        sockets = await asyncio.to_thread(open_long_lived, stack) if held_open else []
        try:
            label = "held open" if held_open else "none"
            results[label] = {
                "GET /api/me": await phase(stack, me, 8),
                "POST …/enhance": await phase(stack, enhance, 8),
            }
            results[label]["api_rss_mb"] = round(rss_mb(stack.api_pid), 1)
            for name in ("GET /api/me", "POST …/enhance"):
                r = results[label][name]
                print(
                    f"long-lived {label:10} {name:16} {r['rps']:7.1f} req/s  p99 {r['p99_ms']:7.1f} ms  "
                    f"{r['statuses']}",
                    flush=True,
                )
        finally:
            for sock in sockets:
                sock.close()
    results["date"] = time.strftime("%Y-%m-%d")
    results["held"] = {
        "event streams": LONG_STREAMS,
        "slow downloads (8 MB)": LONG_DOWNLOADS,
        "trickled upload bodies": LONG_BODIES,
    }
    return results


def long_lived_markdown(part: dict[str, Any]) -> list[str]:
    held = ", ".join(f"{count} {what}" for what, count in part["held"].items())
    lines = [
        "",
        "## Long-lived requests held open",
        "",
        f"{part['date']}. Held open on the one replica, each by its own user: {held}. Concurrency 8, closed "
        f"loop, {PHASE_SECONDS:g} s per cell; the same replica and settings as above.",
        "",
        "| held open | endpoint | req/s | p50 ms | p99 ms | 503 | other 5xx | timeouts | API RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in ("none", "held open"):
        for name in ("GET /api/me", "POST …/enhance"):
            r = part[label][name]
            lines.append(
                f"| {label} | {name} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['deliberate_503']} | "
                f"{r['unexpected_5xx']} | {r['timeouts']} | {part[label]['api_rss_mb']} |"
            )
    return lines


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        "# API load benchmark",
        "",
        f"`python -m bench.api`, {report['date']}, {report['machine']}. One replica (uvicorn, default settings: "
        f"API_CONCURRENCY {settings['api_concurrency']}, DB pool {settings['pool_size']}+"
        f"{settings['db_max_overflow']}, queue timeout {settings['api_queue_timeout_seconds']} s) on PostgreSQL, "
        "in-memory Temporal dev server without a worker (enhance = charge + workflow start). "
        f"{PHASE_SECONDS:g} s closed loop per cell; the load generator, the API and the dev server share the cores "
        "(CPU columns: cores used).",
        "",
        "| endpoint | conc. | req/s | p50 ms | p95 ms | p99 ms | 503 | other 5xx | timeouts "
        "| CPU load gen / API / Temporal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, cells in report["load"].items():
        for concurrency, r in cells.items():
            cpu = r["cpu_cores"]
            lines.append(
                f"| {name} | {concurrency} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                f"{r['deliberate_503']} | {r['unexpected_5xx']} | {r['timeouts']} | "
                f"{cpu['load_generator']} / {cpu['api']} / {cpu['temporal_dev_server']} |"
            )
    lines += [
        "",
        f"## GET /api/me (concurrency 8) during a hostile upload loop "
        f"({HOSTILE_ROUNDS} interleaved rounds, min / median / max)",
        "",
        "| hostile upload | /api/me p50 ms | /api/me p99 ms | /api/me req/s | upload answer p50 ms "
        "| upload statuses | API peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]

    def fmt(s: dict[str, float] | None) -> str:
        return "–" if s is None else f"{s['min']} / {s['median']} / {s['max']}"

    for name, h in report["hostile_upload"].items():
        statuses = (
            "–"
            if h["upload_statuses"] is None
            else ", ".join(f"{k}×{v}" for k, v in sum((Counter(s) for s in h["upload_statuses"]), Counter()).items())
        )
        lines.append(
            f"| {name} | {fmt(h['me_p50_ms'])} | {fmt(h['me_p99_ms'])} | {fmt(h['me_rps'])} | "
            f"{fmt(h['upload_p50_ms'])} | {statuses} | {fmt(h['api_peak_rss_mb'])} |"
        )
    if "long_lived" in report:
        lines += long_lived_markdown(report["long_lived"])
    lines += ["", f"Unexpected 5xx in all: {report['unexpected_5xx']}; timeouts in all: {report['timeouts']}.", ""]
    return "\n".join(lines)


def main() -> int:
    only_long_lived = "--long-lived" in sys.argv[1:]
    settings = Settings()
    with (
        throwaway_database(SERVER_URL, "album_enhance_bench") as database_url,
        tempfile.TemporaryDirectory(prefix="bench-api-") as tmp,
    ):
        storage_dir = Path(tmp) / "storage"
        seeded = seed(database_url, LocalStorage(storage_dir))
        with running_stack(database_url, storage_dir) as (port, api_pid, temporal_pid):

            async def run() -> dict[str, Any]:
                batch_ids = await first_batches(port, seeded)
                users = [(key, album, batch) for (key, album), batch in zip(seeded, batch_ids, strict=True)]
                stack = Stack(port, api_pid, temporal_pid, users)
                if only_long_lived:
                    previous = json.loads((RESULTS / "api.json").read_text())
                    return {
                        "load": previous["load"],
                        "hostile_upload": previous["hostile_upload"],
                        "long_lived": await long_lived(stack),
                    }
                return {**await measure(stack), "long_lived": await long_lived(stack)}

            report = asyncio.run(run())
    cells = [r for cells in report["load"].values() for r in cells.values()]
    cells += [r for h in report["hostile_upload"].values() for r in h["runs"]]
    cells += [r for label in ("none", "held open") for r in report["long_lived"][label].values() if isinstance(r, dict)]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "settings": {
            name: getattr(settings, name)
            for name in (
                "api_concurrency",
                "api_queue_timeout_seconds",
                "pool_size",
                "db_max_overflow",
                "db_pool_timeout_seconds",
                "max_upload_pixels",
            )
        },
        "phase_seconds": PHASE_SECONDS,
        "unexpected_5xx": sum(r["unexpected_5xx"] for r in cells),
        "timeouts": sum(r["timeouts"] for r in cells),
        **report,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "api.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if report["unexpected_5xx"] or report["timeouts"] else 0


if __name__ == "__main__":
    sys.exit(main())
