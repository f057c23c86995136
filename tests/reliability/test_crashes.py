"""Crashes and restarts with real processes: a worker SIGKILLed inside an image, the Temporal dev server stopped and
restarted on its state file, the API SIGKILLed between the charge and the workflow start. After each, every job
ends COMPLETED, or FAILED/CANCELLED with exactly one refund; the batch is charged once; balance == sum(ledger)."""

import asyncio
import functools
import io
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image as PILImage
from sqlalchemy import Engine, create_engine, text, update
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from activities.batch import BatchActivities
from core.contracts import BatchResult, ProcessJobInput
from core.vocabulary import UNFINISHED_BATCH_STATUSES
from db import migrate
from db.models import Batch, BatchStatus, EnhancementJob, JobStatus, LedgerType, Tier, utcnow
from db.session import make_engine, session_scope
from services.batches import batch_input, mark_started
from services.deployment import claim_storage
from services.launcher import TemporalLauncher
from services.reconciler import reconcile_once
from storage.local import LocalStorage
from tests.conftest import eventually, make_settings
from tests.db_helpers import (
    assert_balance_matches_ledger,
    balance,
    batch_row,
    jobs_of_batch,
    ledger_entries,
    refunds_for_job,
)
from tests.factories import UserWithKey, charge_batch, make_album, make_image, make_images, make_user
from tests.reliability.processes import (
    DevServer,
    ManagedProcess,
    ProcessSet,
    free_port,
    process_set,
    service_env,
    wait_for_http,
)
from workflows.batch_enhance import BatchEnhanceWorkflow

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

TOKENS = 200
FINISHED_JOB = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: a database of their own (the processes' reconcilers scan every CHARGED batch), a Temporal dev server
# with its state in a file, and the processes of each test, killed at the end whatever happens.


@dataclass(frozen=True)
class CrashDb:
    url: str
    engine: Engine


@pytest.fixture
def crash_db(primary_db_url: str, tmp_path: Path) -> Iterator[CrashDb]:
    """A fresh database on the primary backend (PostgreSQL when configured, else SQLite), dropped afterwards."""
    primary = make_url(primary_db_url)
    if primary.get_backend_name() == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
        admin = None
    else:
        name = f"album_enhance_crash_{uuid.uuid4().hex[:10]}"
        admin = create_engine(primary, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = primary.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        yield CrashDb(url, engine)
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessSet]:
    with process_set(tmp_path / "processes") as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shared_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[DevServer, Client]]:
    """One dev server for the tests that do not restart it (each test has its own task queue)."""
    root = tmp_path_factory.mktemp("temporal")
    with process_set(root) as started:
        server = DevServer(started, root / "temporal-state.db")
        yield server, await server.start()


# ---------------------------------------------------------------------------------------------------------------
# The system under test: settings for its processes, an album to enhance, and the checks made after every crash.


@dataclass
class Stack:
    db: CrashDb
    storage: LocalStorage
    env: dict[str, str]
    task_queue: str

    @property
    def engine(self) -> Engine:
        return self.db.engine

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['API_PORT']}"

    def with_settings(self, **settings: object) -> dict[str, str]:
        return {**self.env, **{name.upper(): str(value) for name, value in settings.items()}}

    async def start_api(
        self, processes: ProcessSet, start_delay: float | None = None, **settings: object
    ) -> ManagedProcess:
        env = self.with_settings(**settings)
        api = processes.api(env) if start_delay is None else processes.delayed_api(env, start_delay)
        await asyncio.to_thread(wait_for_http, f"{self.api_url}/healthz", api)
        return api

    async def enhance(self, album: str, user: UserWithKey, tier: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=120) as http:
            return await http.post(f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": tier})


def make_stack(db: CrashDb, tmp_path: Path, temporal_address: str) -> Stack:
    """Settings of the API and worker processes: fast heartbeats and retries, one image at a time."""
    storage = LocalStorage(tmp_path / "storage")
    claim_storage(db.engine, storage)  # as `db upgrade` does: workers may start before the API
    task_queue = f"crash-{uuid.uuid4().hex}"
    env = service_env(
        database_url=db.url,
        storage_dir=storage.root,
        execution_mode="temporal",
        temporal_address=temporal_address,
        temporal_namespace="default",
        task_queue=task_queue,
        sr_task_queue=f"{task_queue}-sr",
        enhance_engine="classic",  # these tests are about crashes, not the network's minutes per image
        api_host="127.0.0.1",
        api_port=free_port(),
        rate_limit_enabled="false",
        image_workers=1,
        activity_max_attempts=5,
        activity_initial_retry_seconds=0.1,
        activity_max_retry_seconds=0.5,
        activity_heartbeat_timeout_seconds=2,
        workflow_start_timeout_seconds=5,
        reconcile_interval_seconds=3600,
        reconcile_grace_seconds=30,
    )
    return Stack(db, storage, env, task_queue)


@functools.cache
def large_photo() -> bytes:
    """A 2000x1500 noisy JPEG: each TIER_4K enhancement of it takes a noticeable fraction of a second."""
    pixels = np.random.default_rng(4).integers(0, 256, size=(1500, 2000, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def album_with(stack: Stack, count: int, large: bool) -> tuple[UserWithKey, str]:
    user = make_user(stack.engine, tokens=TOKENS)
    album = make_album(stack.engine, user)
    if large:
        for i in range(count):
            make_image(stack.engine, stack.storage, album, large_photo(), sort_order=i)
    else:
        make_images(stack.engine, stack.storage, album, count)
    return user, album


def batch_of_album(engine: Engine, album: str) -> Batch | None:
    with Session(engine) as session:
        return session.exec(select(Batch).where(col(Batch.album_id) == album)).first()


def count_status(engine: Engine, batch_id: str, status: JobStatus) -> int:
    return sum(1 for job in jobs_of_batch(engine, batch_id) if job.status == status)


def batch_finished(engine: Engine, batch_id: str) -> bool:
    return batch_row(engine, batch_id).status not in UNFINISHED_BATCH_STATUSES


async def unreachable_launcher() -> TemporalLauncher:
    """A launcher whose Temporal address is a closed port: every start fails."""
    client = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    return TemporalLauncher(client, "nowhere", start_timeout=1)


@dataclass(frozen=True)
class Settled:
    """What a batch left behind, for the report."""

    jobs: list[EnhancementJob]
    charged: int
    refunded: int


def assert_settled(stack: Stack, user: UserWithKey, batch_id: str) -> Settled:
    """Every job finished; COMPLETED ones have their file and no refund, others exactly one; charged once."""
    engine = stack.engine
    jobs = jobs_of_batch(engine, batch_id)
    batch = batch_row(engine, batch_id)
    assert batch.status in (BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED)
    for job in jobs:
        assert job.status in FINISHED_JOB, f"job {job.id} left {job.status}"
        if job.status == JobStatus.COMPLETED:
            assert job.tokens_refunded == 0 and refunds_for_job(engine, job.id) == 0
            assert job.enhanced_key is not None and stack.storage.exists(job.enhanced_key)
            assert stack.storage.path_for(job.enhanced_key).stat().st_size == job.enhanced_size_bytes
            with PILImage.open(stack.storage.path_for(job.enhanced_key)) as enhanced:
                assert enhanced.format == "JPEG"
                assert enhanced.size == (job.enhanced_width, job.enhanced_height)
        else:
            assert job.tokens_refunded == job.tokens_cost and refunds_for_job(engine, job.id) == 1
    consumed = [row for row in ledger_entries(engine, user.id, LedgerType.CONSUME) if row.reference == batch_id]
    assert len(consumed) == 1 and -consumed[0].amount == batch.tokens_charged == sum(j.tokens_cost for j in jobs)
    refunds = ledger_entries(engine, user.id, LedgerType.REFUND)
    assert len({row.reference for row in refunds}) == len(refunds)
    refunded = sum(job.tokens_refunded for job in jobs)
    assert sum(row.amount for row in refunds) == refunded
    assert balance(engine, user.id) == TOKENS - batch.tokens_charged + refunded
    assert_balance_matches_ledger(engine, user.id)
    return Settled(jobs, batch.tokens_charged, refunded)


def ledger_state(stack: Stack, user: UserWithKey) -> tuple[int, int, list[tuple[str, str, int]]]:
    """Balance, ledger rows and job states of a user, to show that something changed nothing."""
    with Session(stack.engine) as session:
        jobs = session.exec(select(EnhancementJob).where(col(EnhancementJob.user_id) == user.id)).all()
        states = sorted((job.id, str(job.status), job.attempts) for job in jobs)
    return balance(stack.engine, user.id), len(ledger_entries(stack.engine, user.id)), states


def report(name: str, settled: Settled, faults: str, started: float) -> None:
    """One line per scenario (shown with -s, or when the test fails)."""
    print(
        f"[{name}] jobs={len(settled.jobs)} statuses={dict(Counter(str(job.status) for job in settled.jobs))} "
        f"attempts={[job.attempts for job in settled.jobs]} charged={settled.charged} refunded={settled.refunded} "
        f"faults={faults} seconds={time.monotonic() - started:.1f}"
    )


async def wait_for_worker(client: Client, task_queue: str, within: float = 30) -> None:
    """Wait until a worker polls the task queue (so its reconciler's first pass has run or is running)."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + within
    while not (await client.workflow_service.describe_task_queue(request)).pollers:
        assert time.monotonic() < deadline, f"no worker polls {task_queue}"
        await asyncio.sleep(0.05)


async def result_of(client: Client, batch_id: str, within: float = 60) -> BatchResult:
    handle = client.get_workflow_handle_for(BatchEnhanceWorkflow.run, batch_id)
    return await asyncio.wait_for(handle.result(), within)


# ---------------------------------------------------------------------------------------------------------------
# The worker is SIGKILLed inside an image; a new worker finishes the batch.


async def freeze_inside_an_image(worker: ManagedProcess, engine: Engine, batch_id: str) -> EnhancementJob:
    """Freeze the worker (SIGSTOP) at a moment when, seen from the database, it is enhancing an image after at
    least one was completed; a frozen process cannot move on, so the kill that follows lands inside that image."""
    deadline = time.monotonic() + 60
    while True:
        jobs = jobs_of_batch(engine, batch_id)
        assert not all(job.status in FINISHED_JOB for job in jobs), "the batch finished before the worker was killed"
        statuses = {job.status for job in jobs}
        if JobStatus.COMPLETED in statuses and JobStatus.PROCESSING in statuses:
            worker.freeze()
            frozen = [job for job in jobs_of_batch(engine, batch_id) if job.status == JobStatus.PROCESSING]
            if frozen:
                return frozen[0]
            worker.thaw()  # it was between two images: try again
        assert time.monotonic() < deadline, "no image was ever seen in flight"
        await asyncio.sleep(0.01)


async def test_worker_sigkill_mid_image_then_a_new_worker_finishes_the_batch(
    shared_server: tuple[DevServer, Client], crash_db: CrashDb, tmp_path: Path, processes: ProcessSet
) -> None:
    started = time.monotonic()
    server, client = shared_server
    stack = make_stack(crash_db, tmp_path, server.address)
    user, album = album_with(stack, 6, large=True)
    first_worker = processes.worker(stack.env)
    await stack.start_api(processes)

    response = await stack.enhance(album, user, "TIER_4K")
    assert response.status_code == 200, response.text
    batch_id = response.json()["batchId"]
    in_flight = await freeze_inside_an_image(first_worker, stack.engine, batch_id)
    first_worker.kill()

    # The job is stuck in PROCESSING while its activity may still finish elsewhere: even a reconciler that may
    # refund anything (no grace, no refund delay) and cannot reach Temporal leaves it alone.
    settings = make_settings(stack.db.url, stack.storage, reconcile_grace_seconds=0, reconcile_refund_after_seconds=0)
    passed = await reconcile_once(stack.engine, await unreachable_launcher(), settings)
    assert batch_id not in passed.started + passed.refunded + passed.failed
    stuck = {job.id: job for job in jobs_of_batch(stack.engine, batch_id)}[in_flight.id]
    assert stuck.status == JobStatus.PROCESSING and stuck.tokens_refunded == 0
    assert refunds_for_job(stack.engine, in_flight.id) == 0
    description = await client.get_workflow_handle(batch_id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING

    processes.worker(stack.env)
    result = await result_of(client, batch_id)

    assert (result.status, result.completed, result.failed, result.cancelled) == ("COMPLETED", 6, 0, 0)
    settled = assert_settled(stack, user, batch_id)
    assert [job.status for job in settled.jobs] == [JobStatus.COMPLETED] * 6
    jobs = {job.id: job for job in settled.jobs}
    assert jobs[in_flight.id].attempts >= 2, "the killed image must have been retried by the new worker"
    assert (settled.charged, settled.refunded) == (60, 0)
    assert batch_row(stack.engine, batch_id).status == BatchStatus.COMPLETED
    report("worker SIGKILL", settled, f"1 SIGKILL of the worker inside job #{in_flight.position}", started)


# ---------------------------------------------------------------------------------------------------------------
# The Temporal dev server is stopped mid-batch and started again on the same state file and ports.


async def test_dev_server_restart_mid_batch_finishes_the_batch(
    crash_db: CrashDb, tmp_path: Path, processes: ProcessSet
) -> None:
    started = time.monotonic()
    server = DevServer(processes, tmp_path / "temporal" / "state.db")
    await server.start()
    stack = make_stack(crash_db, tmp_path, server.address)
    user, album = album_with(stack, 8, large=True)
    worker = processes.worker(stack.env)
    await stack.start_api(processes)

    response = await stack.enhance(album, user, "TIER_4K")
    assert response.status_code == 200, response.text
    batch_id = response.json()["batchId"]
    await eventually(lambda: count_status(stack.engine, batch_id, JobStatus.COMPLETED) >= 1, within=60, interval=0.01)
    await asyncio.to_thread(server.stop)
    done_while_down = count_status(stack.engine, batch_id, JobStatus.COMPLETED)
    assert done_while_down < 8, "the batch finished before the server stopped"

    client = await server.start()
    # The workflow survived in the state file (a server without it would answer NOT_FOUND).
    restarted = await client.get_workflow_handle(batch_id).describe()
    assert restarted.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)
    await eventually(lambda: batch_finished(stack.engine, batch_id), within=60, interval=0.05)
    result = await result_of(client, batch_id)

    assert worker.alive(), "the worker must survive the server restart"
    assert (result.status, result.completed) == ("COMPLETED", 8)
    settled = assert_settled(stack, user, batch_id)
    assert [job.status for job in settled.jobs] == [JobStatus.COMPLETED] * 8
    assert (settled.charged, settled.refunded) == (80, 0)
    report("dev server restart", settled, f"1 SIGTERM+restart of the server after {done_while_down}/8", started)


# ---------------------------------------------------------------------------------------------------------------
# The API is SIGKILLed between the charge and the workflow start; the reconciler starts the batch.


async def charge_then_kill_api(stack: Stack, processes: ProcessSet, album: str, user: UserWithKey) -> Batch:
    """Send the enhance request to an API that waits between its charge and its start, and SIGKILL it there."""
    api = await stack.start_api(processes, start_delay=120)
    request = asyncio.create_task(stack.enhance(album, user, "TIER_1K"))
    await eventually(lambda: batch_of_album(stack.engine, album) is not None, within=30, interval=0.02)
    api.kill()
    with pytest.raises(httpx.TransportError):
        await request
    batch = batch_of_album(stack.engine, album)
    assert batch is not None and batch.status == BatchStatus.CHARGED
    assert all(job.status == JobStatus.PENDING for job in jobs_of_batch(stack.engine, batch.id))
    return batch


async def assert_never_started(client: Client, batch_id: str) -> None:
    with pytest.raises(RPCError) as missing:
        await client.get_workflow_handle(batch_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


async def test_api_killed_after_charge_is_started_by_the_reconciler_at_worker_start(
    shared_server: tuple[DevServer, Client], crash_db: CrashDb, tmp_path: Path, processes: ProcessSet
) -> None:
    started = time.monotonic()
    server, client = shared_server
    stack = make_stack(crash_db, tmp_path, server.address)
    user, album = album_with(stack, 3, large=False)
    batch = await charge_then_kill_api(stack, processes, album, user)
    await assert_never_started(client, batch.id)

    grace = 1.0
    await eventually(lambda: utcnow() - batch.created_at > timedelta(seconds=grace), within=10)
    # Only the pass at worker start can find it: the next one would come an hour later.
    processes.worker(stack.with_settings(reconcile_grace_seconds=grace, reconcile_interval_seconds=3600))
    await eventually(lambda: batch_row(stack.engine, batch.id).status != BatchStatus.CHARGED, within=30)
    result = await result_of(client, batch.id)

    assert (result.status, result.completed) == ("COMPLETED", 3)
    row = batch_row(stack.engine, batch.id)
    assert row.started_at is not None and row.started_at - row.created_at >= timedelta(seconds=grace)
    settled = assert_settled(stack, user, batch.id)
    assert [job.status for job in settled.jobs] == [JobStatus.COMPLETED] * 3
    assert (settled.charged, settled.refunded) == (6, 0)

    # Starting it again (a late API, another reconciler) is a no-op: the workflow id is the batch id.
    ledger_state_before = ledger_state(stack, user)
    first_run = (await client.get_workflow_handle(batch.id).describe()).run_id
    with Session(stack.engine) as session:
        inp = batch_input(session, session.get_one(Batch, batch.id), make_settings(stack.db.url, stack.storage))
    await TemporalLauncher(client, stack.task_queue, 5).start(inp)
    again = await client.get_workflow_handle(batch.id).describe()
    assert (again.run_id, again.status) == (first_run, WorkflowExecutionStatus.COMPLETED)
    assert ledger_state(stack, user) == ledger_state_before
    report("API SIGKILL, reconciler at worker start", settled, "1 SIGKILL of the API after the charge", started)


async def test_api_killed_after_charge_is_started_by_the_periodic_reconciler(
    shared_server: tuple[DevServer, Client], crash_db: CrashDb, tmp_path: Path, processes: ProcessSet
) -> None:
    started = time.monotonic()
    server, client = shared_server
    stack = make_stack(crash_db, tmp_path, server.address)
    user, album = album_with(stack, 3, large=False)
    stack.env = stack.with_settings(reconcile_grace_seconds=1, reconcile_interval_seconds=0.25)
    processes.worker(stack.env)
    await wait_for_worker(client, stack.task_queue)
    batch = await charge_then_kill_api(stack, processes, album, user)

    # Nothing is restarted: the worker's periodic pass finds the batch once it is older than the grace period.
    await eventually(lambda: batch_row(stack.engine, batch.id).status != BatchStatus.CHARGED, within=30)
    result = await result_of(client, batch.id)

    assert (result.status, result.completed) == ("COMPLETED", 3)
    settled = assert_settled(stack, user, batch.id)
    assert [job.status for job in settled.jobs] == [JobStatus.COMPLETED] * 3
    assert (settled.charged, settled.refunded) == (6, 0)
    report("API SIGKILL, periodic reconciler", settled, "1 SIGKILL of the API after the charge", started)


async def test_reconciler_and_a_slow_api_start_the_batch_once(
    shared_server: tuple[DevServer, Client], crash_db: CrashDb, tmp_path: Path, processes: ProcessSet
) -> None:
    """The reconciler starts a batch while the API that charged it is still in its window; the API's own start
    that follows finds the workflow (same id) and starts nothing: one run, one charge, no refund."""
    started = time.monotonic()
    server, client = shared_server
    stack = make_stack(crash_db, tmp_path, server.address)
    user, album = album_with(stack, 3, large=False)
    processes.worker(stack.with_settings(reconcile_grace_seconds=0.5, reconcile_interval_seconds=0.25))
    await stack.start_api(processes, start_delay=4)
    await wait_for_worker(client, stack.task_queue)

    request = asyncio.create_task(stack.enhance(album, user, "TIER_1K"))
    await eventually(lambda: batch_of_album(stack.engine, album) is not None, within=30, interval=0.02)
    batch = batch_of_album(stack.engine, album)
    assert batch is not None
    await eventually(lambda: batch_row(stack.engine, batch.id).status != BatchStatus.CHARGED, within=30)
    assert not request.done(), "the reconciler must have started the batch inside the API's window"
    run_id = (await client.get_workflow_handle(batch.id).describe()).run_id

    response = await request
    assert response.status_code == 200, response.text
    assert response.json()["batchId"] == batch.id
    result = await result_of(client, batch.id)
    assert (result.status, result.completed) == ("COMPLETED", 3)
    assert (await client.get_workflow_handle(batch.id).describe()).run_id == run_id
    runs = [execution async for execution in client.list_workflows(f'WorkflowId = "{batch.id}"')]
    assert [execution.run_id for execution in runs] == [run_id]
    settled = assert_settled(stack, user, batch.id)
    assert all(job.attempts == 1 for job in settled.jobs)
    assert (settled.charged, settled.refunded) == (6, 0)
    report("reconciler vs slow API", settled, "1 concurrent double start", started)


# ---------------------------------------------------------------------------------------------------------------
# A charged batch that cannot be started is refunded once it is old enough; a running one is never touched.


async def test_reconciler_refunds_a_charged_batch_it_cannot_start(crash_db: CrashDb, tmp_path: Path) -> None:
    """Temporal unreachable: a young CHARGED batch is kept for the next pass, an old one is refunded (once). A
    PROCESSING job is never refunded, whether its batch is RUNNING or was started without being marked so."""
    started = time.monotonic()
    engine, storage = crash_db.engine, LocalStorage(tmp_path / "storage")
    settings = make_settings(crash_db.url, storage, execution_mode="temporal", reconcile_grace_seconds=0)
    activities = BatchActivities(engine, storage, settings.max_image_pixels)
    user = make_user(engine, tokens=TOKENS)
    albums = {name: make_album(engine, user, name=name) for name in ("stranded", "unseen", "running")}
    for name, count in (("stranded", 3), ("unseen", 3), ("running", 2)):
        make_images(engine, storage, albums[name], count)
    with session_scope(engine) as session:
        stranded, unseen, running = (plan_charge(session, user, albums[name]) for name in albums)
        mark_started(session, running)
    # An activity holds the first image of `running`, and of `unseen`, whose workflow started but whose row was
    # never marked (the API died between the start and its commit).
    unseen_first, running_first = jobs_of_batch(engine, unseen)[0].id, jobs_of_batch(engine, running)[0].id
    activities._claim(unseen_first)
    activities._claim(running_first)
    launcher = await unreachable_launcher()

    first = await reconcile_once(engine, launcher, settings)
    assert (first.started, first.refunded, sorted(first.failed)) == ([], [], sorted([stranded, unseen]))
    assert batch_row(engine, stranded).status == BatchStatus.CHARGED, "a young batch is retried, not refunded"
    assert all(job.status == JobStatus.PENDING for job in jobs_of_batch(engine, stranded))

    with session_scope(engine) as session:
        session.exec(update(Batch).values(created_at=utcnow() - timedelta(hours=2)))
    second = await reconcile_once(engine, launcher, settings)
    third = await reconcile_once(engine, launcher, settings)
    assert (second.started, sorted(second.refunded), second.failed) == ([], sorted([stranded, unseen]), [])
    assert (third.started, third.refunded, third.failed) == ([], [], [])

    row = batch_row(engine, stranded)
    assert row.status == BatchStatus.FAILED and row.finished_at is not None
    jobs = jobs_of_batch(engine, stranded)
    assert all(job.status == JobStatus.FAILED and job.tokens_refunded == 5 for job in jobs)
    assert all(refunds_for_job(engine, job.id) == 1 for job in jobs)
    assert [job.status for job in jobs_of_batch(engine, unseen)] == [JobStatus.PROCESSING] + [JobStatus.FAILED] * 2
    assert [job.status for job in jobs_of_batch(engine, running)] == [JobStatus.PROCESSING, JobStatus.PENDING]
    assert refunds_for_job(engine, unseen_first) == refunds_for_job(engine, running_first) == 0
    assert batch_row(engine, running).status == BatchStatus.RUNNING

    # The activity that held the unseen batch's image finishes (a retry of it): its work stands, unrefunded.
    assert (
        ActivityEnvironment().run(activities.process_job, ProcessJobInput(unseen_first)).status == JobStatus.COMPLETED
    )
    finished = {job.id: job for job in jobs_of_batch(engine, unseen)}[unseen_first]
    assert finished.tokens_refunded == 0 and refunds_for_job(engine, unseen_first) == 0
    assert finished.enhanced_key is not None and storage.exists(finished.enhanced_key)
    assert balance(engine, user.id) == TOKENS - 15 + 15 - 15 + 10 - 10
    assert_balance_matches_ledger(engine, user.id)
    closed = jobs + jobs_of_batch(engine, unseen)
    settled = Settled(closed, 30, sum(job.tokens_refunded for job in closed))
    report("reconciler refund", settled, "Temporal unreachable for 3 passes", started)


def plan_charge(session: Session, user: UserWithKey, album: str) -> str:
    planned = charge_batch(session, user.id, album, Tier.TIER_2K, execution_mode="temporal")
    assert planned.batch is not None
    return planned.batch.id
