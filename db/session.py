"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from core.config import Settings
from core.errors import StartupRefused
from db import (
    migrate,
    models,  # noqa: F401  (registers the tables on SQLModel.metadata)
)

# How long a SQLite writer queues for the database's single write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _enable_sqlite_concurrency(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the single writer; busy_timeout queues writers instead of failing.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


@dataclass(frozen=True)
class PoolSettings:
    """Connection pool bounds; `timeout` is how long a checkout waits before SQLAlchemy's TimeoutError."""

    size: int = 20
    max_overflow: int = 0
    timeout: float = 5.0

    @classmethod
    def of(cls, settings: Settings) -> "PoolSettings":
        """The pool a long-running process (API, worker) keeps, from DB_POOL_SIZE, DB_MAX_OVERFLOW and
        DB_POOL_TIMEOUT_SECONDS: at least one connection per admitted request and image thread, plus the reserve."""
        return cls(settings.pool_size, settings.db_max_overflow, settings.db_pool_timeout_seconds)


def make_engine(database_url: str, pool: PoolSettings | None = None) -> Engine:
    """Create an engine for the URL, creating the SQLite file's folder if needed."""
    pool = pool or PoolSettings()
    url = make_url(database_url)
    pool_args: dict[str, Any] = {
        "pool_size": pool.size,
        "max_overflow": pool.max_overflow,
        "pool_timeout": pool.timeout,
        # A connection dropped by the server (restart, failover) is noticed at checkout, not by the request.
        "pool_pre_ping": True,
    }
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return create_engine(url, connect_args={"check_same_thread": False})
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool_args)
        _enable_sqlite_concurrency(engine)
        return engine
    return create_engine(url, **pool_args)


def check_schema(engine: Engine) -> None:
    """Refuse to run on a database whose schema is not the one this code was written for."""
    current, needed = migrate.current_revision(engine), migrate.head_revision()
    if current != needed:
        raise StartupRefused(
            f"the database schema is at revision {current or '(none)'}, this version needs {needed}: "
            "run `album-enhance db upgrade` first"
        )


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """One step's transaction on an open session: it commits when the block ends and rolls back if the block
    raises. The only way this code commits; functions that are handed a session never commit or roll back."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session of its own with one transaction (activities, the CLI, background tasks)."""
    with Session(engine, expire_on_commit=False) as session, transaction(session):
        yield session


@contextmanager
def without_waiting(session: Session) -> Iterator[None]:
    """For a write that may be skipped (bookkeeping such as a key's last use): on SQLite it fails at once with
    OperationalError instead of queueing for the single write lock, so a request is never held up by it. Other
    databases lock rows, not the database: nothing changes there."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    connection = session.connection()
    connection.exec_driver_sql("PRAGMA busy_timeout=0")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
