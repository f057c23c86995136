"""A small closed-loop HTTP load generator: N clients, each on its own keep-alive connection, each sending its next
request as soon as the previous answer arrived.

Written on bare asyncio streams rather than an HTTP client library so that the generator, which shares the machine
with the server it measures, spends as little CPU per request as possible; its own CPU time is reported with every
measurement.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    """One HTTP/1.1 request, fully rendered (method, path, headers, body)."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def render(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(self.body)}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def json_request(method: str, path: str, api_key: str, body: object | None = None) -> Request:
    headers = {"Authorization": f"Bearer {api_key}"}
    if body is None:
        return Request(method, path, headers)
    return Request(method, path, headers | {"Content-Type": "application/json"}, json.dumps(body).encode())


@dataclass(frozen=True)
class LoadResult:
    """What one load level measured; latencies in milliseconds."""

    clients: int
    seconds: float
    requests: int
    errors: int
    status_counts: dict[str, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    requests_per_second: float
    generator_cpu_cores: float  # CPU seconds the load generator spent per wall second


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value is one that was observed)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response off a keep-alive connection and return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(status_line.split(" ", 2)[1])


async def _client(
    host: str,
    port: int,
    next_request: Callable[[int], Request],
    client_id: int,
    stop_at: float,
    out: list[tuple[Any, ...]],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    hostname = f"{host}:{port}"
    try:
        while time.perf_counter() < stop_at:
            payload = next_request(client_id).render(hostname)
            started = time.perf_counter()
            writer.write(payload)
            status = await _read_response(reader)
            out.append((time.perf_counter() - started, status))
    finally:
        writer.close()


async def run_load(
    host: str, port: int, clients: int, seconds: float, next_request: Callable[[int], Request]
) -> LoadResult:
    """Run `clients` closed-loop clients for `seconds`; `next_request(client_id)` gives each one's next request."""
    samples: list[tuple[float, int]] = []
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    stop_at = wall_before + seconds
    await asyncio.gather(*(_client(host, port, next_request, i, stop_at, samples) for i in range(clients)))
    wall = time.perf_counter() - wall_before
    cpu = time.process_time() - cpu_before
    latencies = [seconds_taken * 1000 for seconds_taken, _ in samples]
    statuses: dict[str, int] = {}
    for _, status in samples:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return LoadResult(
        clients=clients,
        seconds=round(wall, 2),
        requests=len(samples),
        errors=sum(count for status, count in statuses.items() if not status.startswith("2")),
        status_counts=statuses,
        p50_ms=round(percentile(latencies, 0.50), 1),
        p95_ms=round(percentile(latencies, 0.95), 1),
        p99_ms=round(percentile(latencies, 0.99), 1),
        max_ms=round(max(latencies, default=math.nan), 1),
        requests_per_second=round(len(samples) / wall, 1),
        generator_cpu_cores=round(cpu / wall, 2),
    )
