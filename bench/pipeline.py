"""Benchmark of the whole pipeline: `python -m bench.pipeline`.

In one run, on one throwaway PostgreSQL database and one Temporal dev server (state in a file, as `make dev`):

1. Batches: the engine alone, direct mode and Temporal mode on the same 6 MP images, as one album of 20 images at
   TIER_1K and as 5 albums of 20 images at TIER_2K submitted at once. The engine's 2-thread ceiling is the same
   100 images on two threads with no orchestration at all. The modes are interleaved within each round (their
   order rotates), so drift in the machine's load hits all of them alike.
2. The API: `POST /api/albums/{id}/enhance` and `GET /api/me` latency at 1, 8 and 32 closed-loop clients, the API
   in its own process (Temporal mode, no worker on its task queue, so no image work competes for the CPU), the
   load generator's and the API's CPU reported beside each figure. Then the same with a worker process serving the
   API's task queues, as `make dev` runs them: each enhance request's batch (one small photo the network enlarges)
   is enhanced while the clients keep enhancing, so the worker and its SR processes are busy all along.

At the end every user's balance must equal the sum of their ledger, and every batch of part 1 must be COMPLETED.
Results: bench/results/pipeline.json and pipeline.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client

from activities.batch import BatchActivities
from bench.load import Request, json_request, percentile, run_load
from bench.photos import photo_like_jpeg
from bench.throwaway import throwaway_database
from core.config import Settings
from core.contracts import BatchEnhanceInput
from core.temporal_dev import start_dev_server
from core.vocabulary import TIERS, BatchStatus, JobStatus, Tier
from db import ledger, migrate
from db.models import Album, Batch, EnhancementJob, Image, User, new_id
from db.session import make_engine, session_scope, transaction
from imaging import enhance_image
from services.batches import input_for, mark_started
from services.enhance import BatchRequest, plan_and_charge
from services.launcher import TemporalLauncher
from services.users import create_user
from storage.local import LocalStorage, original_key
from worker import running_workers, worker_activities
from workflows.direct import DirectLauncher

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

SOURCE_SIZE = (3000, 2000)  # 6 MP, as the imaging benchmark's main source
SOURCE_SEEDS = (1, 2)  # generating a photo-like image takes seconds: a few distinct ones, stored once per image row
CLIENT_LEVELS = (1, 8, 32)
PIPELINE_ALBUM = "bench-pipeline"
MODES = ("engine", "direct", "temporal")
TARGETS = {
    "temporal_over_direct_20x1k": 1.3,  # at most
    "fraction_of_ceiling_5x20x2k": 0.85,  # at least (Temporal mode)
    "enhance_p50_ms_1_client": 30.0,
    "enhance_p99_ms_32_clients": 100.0,
    "me_p99_ms_32_clients": 50.0,
    "enhance_p99_ms_32_clients_worker_busy": 1000.0,
    "me_p95_ms_1_client_worker_busy": 100.0,
}
BUSY_LEVELS = (1, 32)  # clients, with the worker busy


@dataclass(frozen=True)
class Scenario:
    name: str
    tier: Tier
    batches: int
    images: int

    @property
    def total_images(self) -> int:
        return self.batches * self.images


SINGLE = Scenario("20x1K", Tier.TIER_1K, batches=1, images=20)
CONCURRENT = Scenario("5x20x2K", Tier.TIER_2K, batches=5, images=20)


@dataclass
class Stack:
    """The parts every measurement shares."""

    settings: Settings
    engine: Engine
    storage: LocalStorage
    activities: BatchActivities
    client: Client
    sources: list[bytes]
    user_id: str
    server_pid: int  # the Temporal dev server, whose CPU counts as orchestration


@dataclass
class Measured:
    """One run: wall seconds, and CPU seconds of this process (engine, worker, drivers) plus the dev server."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0


@contextmanager
def measuring(stack: Stack) -> Iterator[Measured]:
    measured = Measured()
    cpu_before = time.process_time() + process_cpu_seconds(stack.server_pid)
    started = time.perf_counter()
    yield measured
    measured.seconds = time.perf_counter() - started
    measured.cpu_seconds = time.process_time() + process_cpu_seconds(stack.server_pid) - cpu_before


# Setup --------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_user(engine: Engine, tokens: int) -> tuple[str, str]:
    """A user with a grant; returns (user id, API key)."""
    with session_scope(engine) as session:
        user, api_key = create_user(session, f"bench-{new_id()[:12]}@example.com", tokens, "bench:grant")
        return user.id, api_key


def make_album(engine: Engine, storage: LocalStorage, user_id: str, originals: list[bytes], name: str) -> str:
    """An album of the given originals (each stored under its own key, as an upload would)."""
    with session_scope(engine) as session:
        album = Album(owner_id=user_id, name=name)
        session.add(album)
        session.flush()
        for order, data in enumerate(originals):
            image_id = new_id()
            key = original_key(album.id, image_id, "JPEG")
            storage.put(key, data)
            session.add(
                Image(
                    id=image_id,
                    album_id=album.id,
                    original_key=key,
                    width=SOURCE_SIZE[0],
                    height=SOURCE_SIZE[1],
                    format="JPEG",
                    size_bytes=len(data),
                    sort_order=order,
                )
            )
        return album.id


def charge_batches(stack: Stack, scenario: Scenario, mode: str) -> list[BatchEnhanceInput]:
    """Fresh albums for the scenario, charged as the enhance route charges them, marked started."""
    inputs = []
    for _ in range(scenario.batches):
        originals = [stack.sources[i % len(stack.sources)] for i in range(scenario.images)]
        album_id = make_album(stack.engine, stack.storage, stack.user_id, originals, PIPELINE_ALBUM)
        with Session(stack.engine, expire_on_commit=False) as session:
            request = BatchRequest(stack.user_id, album_id, scenario.tier, True)
            with transaction(session):
                planned = plan_and_charge(session, request, stack.settings.max_batch_size, mode)
            assert planned.batch is not None
            with transaction(session):
                mark_started(session, planned.batch.id)
            inputs.append(input_for(planned.batch, planned.jobs, planned.to_enhance, stack.settings))
    return inputs


# Part 1: batches ----------------------------------------------------------------------------------------------------


async def run_engine(stack: Stack, scenario: Scenario) -> Measured:
    """The engine alone: one thread for one batch, the 2-thread ceiling for several (no database, no storage)."""
    long_side = TIERS[scenario.tier].long_side
    sources = [stack.sources[i % len(stack.sources)] for i in range(scenario.total_images)]

    def one(data: bytes) -> None:
        enhance_image(data, long_side, stack.settings.max_image_pixels)

    threads = 1 if scenario.batches == 1 else stack.settings.image_workers
    with measuring(stack) as measured, ThreadPoolExecutor(max_workers=threads) as pool:
        await asyncio.get_running_loop().run_in_executor(None, lambda: list(pool.map(one, sources)))
    return measured


async def run_direct(stack: Stack, scenario: Scenario) -> Measured:
    inputs = charge_batches(stack, scenario, "direct")
    with ThreadPoolExecutor(max_workers=stack.settings.image_workers, thread_name_prefix="image") as executor:
        launcher = DirectLauncher(stack.activities, executor, stack.settings.direct_poll_interval_seconds)
        with measuring(stack) as measured:
            results = await asyncio.gather(*(launcher.run(inp) for inp in inputs))
    assert all(result.completed == scenario.images for result in results), results
    return measured


async def run_temporal(stack: Stack, scenario: Scenario) -> Measured:
    """Start the batches as the API does and wait for their workflows (the worker runs in this process)."""
    inputs = charge_batches(stack, scenario, "temporal")
    launcher = TemporalLauncher(stack.client, stack.settings.task_queue, stack.settings.workflow_start_timeout_seconds)
    with measuring(stack) as measured:
        await asyncio.gather(*(launcher.start(inp) for inp in inputs))
        results = await asyncio.gather(*(stack.client.get_workflow_handle(inp.batch_id).result() for inp in inputs))
    assert all(result["completed"] == scenario.images for result in results), results
    return measured


RUNNERS: dict[str, Callable[[Stack, Scenario], Awaitable[Measured]]] = {
    "engine": run_engine,
    "direct": run_direct,
    "temporal": run_temporal,
}


Samples = dict[str, dict[str, list[float]]]  # scenario -> mode -> one value per round


async def measure_batches(stack: Stack, rounds: int) -> tuple[Samples, Samples]:
    """Seconds, and CPU milliseconds per image, per (scenario, mode): `rounds` samples each, the modes interleaved
    and their order rotated per round."""
    seconds: Samples = {s.name: {m: [] for m in MODES} for s in (SINGLE, CONCURRENT)}
    cpu_ms: Samples = {s.name: {m: [] for m in MODES} for s in (SINGLE, CONCURRENT)}
    for round_number in range(rounds):
        order = MODES[round_number % len(MODES) :] + MODES[: round_number % len(MODES)]
        for scenario in (SINGLE, CONCURRENT):
            for mode in order:
                run = await RUNNERS[mode](stack, scenario)
                seconds[scenario.name][mode].append(run.seconds)
                cpu_ms[scenario.name][mode].append(run.cpu_seconds * 1000 / scenario.total_images)
                print(
                    f"  round {round_number + 1} {scenario.name} {mode}: {run.seconds:.2f} s, "
                    f"CPU {cpu_ms[scenario.name][mode][-1]:.0f} ms/image",
                    flush=True,
                )
    return seconds, cpu_ms


# Part 2: API latency ------------------------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_env(stack: Stack, port: int, task_queue: str) -> dict[str, str]:
    """The environment of the API and worker processes of part 2, on their own task queues."""
    return os.environ | {
        "DATABASE_URL": stack.settings.database_url,
        "STORAGE_DIR": str(stack.settings.storage_dir),
        "EXECUTION_MODE": "temporal",
        "TEMPORAL_ADDRESS": stack.settings.temporal_address,
        "TASK_QUEUE": task_queue,
        "SR_TASK_QUEUE": f"{task_queue}-sr",
        "API_PORT": str(port),
        "RATE_LIMIT_REQUESTS": "1000000000",  # the counter still runs on every request; it just never refuses
    }


@contextmanager
def api_process(stack: Stack, port: int, task_queue: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`album-enhance api` in its own process; by default on a task queue no worker serves (starts only)."""
    env = service_env(stack, port, task_queue or f"bench-latency-{uuid.uuid4().hex[:8]}")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "api"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the API did not start") from None
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def worker_process(stack: Stack, task_queue: str) -> Iterator[subprocess.Popen[bytes]]:
    """`album-enhance worker` in its own process, serving the task queues of an API started on `task_queue`, with
    the service's default sizing (SR_PROCESSES: the cores)."""
    env = service_env(stack, free_port(), task_queue)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGINT)  # a clean stop; its SR processes are in its session
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def measure_latency(stack: Stack, rounds: int, seconds: float) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Enhance and GET /api/me at each client level, `rounds` times, the levels interleaved; and, at 1 and 32
    clients, bare workflow starts (what bounds enhance). Then enhance and GET /api/me at BUSY_LEVELS while a worker
    process enhances the batches the clients start."""
    tiny = photo_like_jpeg(96, 64, seed=3)  # to TIER_1K: the network enlarges it (three 2x passes)
    clients = []
    for _ in range(max(CLIENT_LEVELS)):
        user_id, api_key = make_user(stack.engine, tokens=10_000_000)
        clients.append((api_key, make_album(stack.engine, stack.storage, user_id, [tiny], "bench-api")))
    body = {"tier": Tier.TIER_1K.value, "skipAlreadyEnhanced": False}
    requests = {
        "enhance": lambda i: json_request("POST", f"/api/albums/{clients[i][1]}/enhance", clients[i][0], body),
        "me": lambda i: json_request("GET", "/api/me", clients[i][0]),
    }
    port = free_port()
    results: dict[str, dict[int, list[dict[str, Any]]]] = {name: {n: [] for n in CLIENT_LEVELS} for name in requests}
    results["workflow_start_only"] = {1: [], max(CLIENT_LEVELS): []}
    with api_process(stack, port) as api:
        await run_load("127.0.0.1", port, 4, 2.0, requests["enhance"])  # warm-up: connections, caches
        await run_load("127.0.0.1", port, 4, 1.0, requests["me"])
        for round_number in range(rounds):
            for level in CLIENT_LEVELS:
                for name, next_request in requests.items():
                    results[name][level].append(await _measure_load(api.pid, port, level, seconds, next_request))
                    _print_load(round_number, name, results[name][level][-1])
                if level in results["workflow_start_only"]:
                    starts = await measure_start_ceiling(stack.client, level, seconds)
                    results["workflow_start_only"][level].append(starts)
                    print(f"  round {round_number + 1} workflow starts alone x{level}: {starts}", flush=True)
    busy_queue = f"bench-busy-{uuid.uuid4().hex[:8]}"
    busy_port = free_port()
    for name in requests:
        results[f"{name}_worker_busy"] = {n: [] for n in BUSY_LEVELS}
    with api_process(stack, busy_port, busy_queue) as api, worker_process(stack, busy_queue):
        # A backlog of batches first, so that the worker and its SR processes are busy from the first sample on.
        await run_load("127.0.0.1", busy_port, 8, 3.0, requests["enhance"])
        await run_load("127.0.0.1", busy_port, 4, 1.0, requests["me"])
        for round_number in range(rounds):
            for level in BUSY_LEVELS:
                for name, next_request in requests.items():
                    row = await _measure_load(api.pid, busy_port, level, seconds, next_request)
                    results[f"{name}_worker_busy"][level].append(row)
                    _print_load(round_number, f"{name} (worker busy)", row)
    return results


async def _measure_load(
    api_pid: int, port: int, level: int, seconds: float, next_request: Callable[[int], Request]
) -> dict[str, Any]:
    api_cpu = process_cpu_seconds(api_pid)
    result = await run_load("127.0.0.1", port, level, seconds, next_request)
    return asdict(result) | {"api_cpu_cores": round((process_cpu_seconds(api_pid) - api_cpu) / seconds, 2)}


async def measure_start_ceiling(client: Client, clients: int, seconds: float) -> dict[str, float]:
    """Workflow starts alone, straight from a client, `clients` at a time: the bound on enhance requests/s (each
    starts one workflow) set by the Temporal server on this machine, before any API work."""
    queue = f"bench-starts-{uuid.uuid4().hex[:8]}"  # no worker: the workflows are only started
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await client.start_workflow("BatchEnhanceWorkflow", id=f"bench-{uuid.uuid4().hex}", task_queue=queue)
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    wall = time.perf_counter() - began
    return {
        "clients": clients,
        "starts_per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
    }


def _print_load(round_number: int, name: str, row: dict[str, Any]) -> None:
    print(
        f"  round {round_number + 1} {name} x{row['clients']}: p50 {row['p50_ms']} p95 {row['p95_ms']} "
        f"p99 {row['p99_ms']} ms, {row['requests_per_second']}/s, {row['errors']} errors, generator "
        f"{row['generator_cpu_cores']} / API {row['api_cpu_cores']} cores",
        flush=True,
    )


# Invariants ---------------------------------------------------------------------------------------------------------


def check_money(engine: Engine) -> dict[str, int]:
    """balance = sum(ledger) for every user, and every job of part 1 COMPLETED."""
    with Session(engine) as session:
        users = session.exec(select(User)).all()
        mismatched = [u.id for u in users if u.token_balance != ledger.ledger_sum(session, u.id)]
        statuses = session.exec(
            select(EnhancementJob.status)
            .join(Batch, col(Batch.id) == col(EnhancementJob.batch_id))
            .join(Album, col(Album.id) == col(Batch.album_id))
            .where(col(Album.name) == PIPELINE_ALBUM)
        ).all()
        api_batches = len(session.exec(select(Batch.id).where(col(Batch.status) == BatchStatus.RUNNING)).all())
    assert not mismatched, f"balance != sum(ledger) for {mismatched}"
    assert statuses and all(s == JobStatus.COMPLETED for s in statuses), "a pipeline job did not complete"
    return {"users_checked": len(users), "pipeline_jobs_completed": len(statuses), "api_batches_charged": api_batches}


# Report -------------------------------------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 2) -> dict[str, float]:
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def summarise_batches(samples: Samples, cpu_ms: Samples) -> dict[str, Any]:
    single, concurrent = samples[SINGLE.name], samples[CONCURRENT.name]
    concurrent_cpu = cpu_ms[CONCURRENT.name]
    rounds = range(len(single["engine"]))
    # Ratios within a round (same machine state), then their spread across rounds.
    per_round = {
        "temporal_over_direct_20x1k": [single["temporal"][r] / single["direct"][r] for r in rounds],
        "direct_overhead_ms_per_image_20x1k": [
            (single["direct"][r] - single["engine"][r]) * 1000 / SINGLE.images for r in rounds
        ],
        "temporal_overhead_ms_per_image_20x1k": [
            (single["temporal"][r] - single["engine"][r]) * 1000 / SINGLE.images for r in rounds
        ],
        "ceiling_images_per_s_5x20x2k": [CONCURRENT.total_images / concurrent["engine"][r] for r in rounds],
        "direct_images_per_s_5x20x2k": [CONCURRENT.total_images / concurrent["direct"][r] for r in rounds],
        "temporal_images_per_s_5x20x2k": [CONCURRENT.total_images / concurrent["temporal"][r] for r in rounds],
        "direct_fraction_of_ceiling_5x20x2k": [concurrent["engine"][r] / concurrent["direct"][r] for r in rounds],
        "fraction_of_ceiling_5x20x2k": [concurrent["engine"][r] / concurrent["temporal"][r] for r in rounds],
        # With both cores busy, the engine gets engine CPU / total CPU of the machine's work: the reachable fraction.
        "cpu_bound_fraction_5x20x2k": [concurrent_cpu["engine"][r] / concurrent_cpu["temporal"][r] for r in rounds],
    }
    return {
        "seconds": {name: {mode: spread(v) for mode, v in by_mode.items()} for name, by_mode in samples.items()},
        "cpu_ms_per_image": {
            name: {mode: spread(v, 1) for mode, v in by_mode.items()} for name, by_mode in cpu_ms.items()
        },
        "derived": {name: spread(values) for name, values in per_round.items()},
    }


def summarise_latency(results: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, by_level in results.items():
        summary[name] = {}
        for level, rows in by_level.items():
            keys = [key for key, value in rows[0].items() if isinstance(value, float) and key != "seconds"]
            summary[name][str(level)] = {key: spread([row[key] for row in rows], 1) for key in keys}
            summary[name][str(level)]["errors"] = sum(row.get("errors", 0) for row in rows)
    return summary


def verdicts(batches: dict[str, Any], latency: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target against the median of the rounds."""
    measured = {
        "temporal_over_direct_20x1k": batches["derived"]["temporal_over_direct_20x1k"]["median"],
        "fraction_of_ceiling_5x20x2k": batches["derived"]["fraction_of_ceiling_5x20x2k"]["median"],
        "enhance_p50_ms_1_client": latency["enhance"]["1"]["p50_ms"]["median"],
        "enhance_p99_ms_32_clients": latency["enhance"]["32"]["p99_ms"]["median"],
        "me_p99_ms_32_clients": latency["me"]["32"]["p99_ms"]["median"],
        "enhance_p99_ms_32_clients_worker_busy": latency["enhance_worker_busy"]["32"]["p99_ms"]["median"],
        "me_p95_ms_1_client_worker_busy": latency["me_worker_busy"]["1"]["p95_ms"]["median"],
    }
    out = {}
    for name, target in TARGETS.items():
        value = measured[name]
        met = value >= target if name.startswith("fraction") else value <= target
        out[name] = {"measured": value, "target": target, "met": met}
    return out


def _cell(s: dict[str, float], unit: str = "") -> str:
    return f"{s['median']}{unit} ({s['min']}–{s['max']})"


def render_markdown(summary: dict[str, Any]) -> str:
    meta, batches, latency = summary["meta"], summary["batches"], summary["latency"]
    derived = batches["derived"]
    lines = [
        "# Pipeline benchmark",
        "",
        f"`python -m bench.pipeline`, {meta['rounds']} rounds, {meta['cpu_count']} cores, Python {meta['python']}; "
        f"load average {meta['load_average_before']:.2f} before, {meta['load_average_after']:.2f} after. "
        "**The machine is shared with other work and noisy**: every figure is the median of the rounds with "
        "(min–max); ratios are taken within a round, where all modes saw the same machine.",
        "",
        f"Sources: 6 MP JPEGs ({SOURCE_SIZE[0]}x{SOURCE_SIZE[1]}); PostgreSQL (throwaway database); Temporal dev "
        "server with its state in a file; worker and direct mode with the service's default sizing "
        f"(IMAGE_WORKERS={meta['image_workers']}).",
        "",
        "## Batches (seconds)",
        "",
        "| scenario | engine alone | direct | Temporal |",
        "|---|---:|---:|---:|",
    ]
    for name, by_mode in batches["seconds"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(by_mode[m]) for m in MODES) + " |")
    lines += [
        "",
        "Engine alone: one thread for 20 x 1K; for 5 x 20 x 2K the same 100 images on two threads with no "
        "orchestration (the ceiling).",
        "",
        "CPU per image (ms): this process (engine, worker or in-process driver, database client) plus the Temporal "
        "dev server.",
        "",
        "| scenario | engine alone | direct | Temporal |",
        "|---|---:|---:|---:|",
    ]
    for name, by_mode in batches["cpu_ms_per_image"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(by_mode[m]) for m in MODES) + " |")
    lines += [
        "",
        "| figure | median (min–max) |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {_cell(values)} |" for name, values in derived.items()]
    lines += [
        "",
        "## API latency (ms), PostgreSQL",
        "",
        "Closed loop: each client sends its next request when the previous answer arrives. Enhance: 1 image at "
        "TIER_1K, `skipAlreadyEnhanced: false` (a charge, a batch and a workflow start every time), one album per "
        "client. CPU in cores (CPU seconds per second) of the load generator and of the API process. `_worker_busy`: "
        "a worker process serves the API's task queues meanwhile (as in `make dev`) and enhances the batches the "
        "clients start (each a 96 x 64 photo the network enlarges to TIER_1K), its SR processes on every core.",
        "",
        "| endpoint | clients | p50 | p95 | p99 | requests/s | generator CPU | API CPU | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_level in latency.items():
        if name == "workflow_start_only":
            continue
        for level, row in by_level.items():
            lines.append(
                f"| {name} | {level} | {_cell(row['p50_ms'])} | {_cell(row['p95_ms'])} | {_cell(row['p99_ms'])} | "
                f"{_cell(row['requests_per_second'])} | {_cell(row['generator_cpu_cores'])} | "
                f"{_cell(row['api_cpu_cores'])} | {row['errors']} |"
            )
    starts = latency["workflow_start_only"]
    lines += [
        "",
        "What bounds enhance: workflow starts alone, straight from a client to the same dev server (no API, no "
        "database), closed loop:",
        "",
        "| clients | starts/s | p50 | p99 |",
        "|---:|---:|---:|---:|",
    ]
    for level, row in starts.items():
        cells = [_cell(row[key]) for key in ("starts_per_second", "p50_ms", "p99_ms")]
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets (median of the rounds)", "", "| target | measured | bound | met |", "|---|---:|---:|---|"]
    for name, v in summary["targets"].items():
        lines.append(f"| {name} | {v['measured']} | {v['target']} | {'yes' if v['met'] else 'no'} |")
    money = summary["money"]
    lines += [
        "",
        f"Money: balance = sum(ledger) held for all {money['users_checked']} users at the end; all "
        f"{money['pipeline_jobs_completed']} jobs of the batch runs COMPLETED; the latency runs charged "
        f"{money['api_batches_charged']} batches left RUNNING (no worker serves their task queue, or the busy "
        "worker had not reached them when it stopped).",
        "",
    ]
    return "\n".join(lines)


# Main ---------------------------------------------------------------------------------------------------------------


async def run(postgres: str, rounds: int, latency_seconds: float) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    print("generating source images", flush=True)
    sources = [photo_like_jpeg(*SOURCE_SIZE, seed=seed) for seed in SOURCE_SEEDS]
    workdir = Path(tempfile.mkdtemp(prefix="album-enhance-bench-"))
    port = free_port()
    server = start_dev_server(workdir / "temporal.db", port, free_port(), "default")
    try:
        with throwaway_database(postgres, "album_enhance_bench") as database_url:
            settings = Settings(
                database_url=database_url,
                storage_dir=workdir / "storage",
                temporal_address=f"127.0.0.1:{port}",
                task_queue=f"bench-{uuid.uuid4().hex[:8]}",
                rate_limit_enabled=False,
                _env_file=None,
            )
            engine = make_engine(database_url)
            migrate.upgrade(engine)
            storage = LocalStorage(settings.storage_dir)
            client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
            activities = worker_activities(engine, storage, settings, client)
            user_id, _ = make_user(engine, tokens=10_000_000)
            stack = Stack(settings, engine, storage, activities, client, sources, user_id, server.pid)
            async with running_workers(client, settings, activities):
                print("part 1: batches", flush=True)
                batch_samples, cpu_samples = await measure_batches(stack, rounds)
            print("part 2: API latency", flush=True)
            latency_samples = await measure_latency(stack, rounds, latency_seconds)
            money = check_money(engine)
            engine.dispose()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    batches = summarise_batches(batch_samples, cpu_samples)
    latency = summarise_latency(latency_samples)
    summary = {
        "meta": {
            "rounds": rounds,
            "latency_seconds_per_level": latency_seconds,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "image_workers": settings.image_workers,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg()[0],
        },
        "batches": batches,
        "latency": latency,
        "targets": verdicts(batches, latency),
        "money": money,
        "raw": {"batch_seconds": batch_samples, "batch_cpu_ms_per_image": cpu_samples, "latency": latency_samples},
    }
    return summary


def write_results(summary: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pipeline.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "pipeline.md").write_text(render_markdown(summary))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a PostgreSQL server URL (a database is made)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=5.0, help="duration of each load level")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for pipeline.json and .md")
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args.postgres, args.rounds, args.latency_seconds))
    write_results(summary, args.out)
    print(render_markdown(summary))


if __name__ == "__main__":
    main()
