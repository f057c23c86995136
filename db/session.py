"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from core.errors import StartupRefused
from db import (
    migrate,
    models,  # noqa: F401  (registers the tables on SQLModel.metadata)
)


def _enable_sqlite_concurrency(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the single writer; busy_timeout queues writers instead of failing.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def make_engine(database_url: str) -> Engine:
    """Create an engine for the URL, creating the SQLite file's folder if needed."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _enable_sqlite_concurrency(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def check_schema(engine: Engine) -> None:
    """Refuse to run on a database whose schema is not the one this code was written for."""
    current, needed = migrate.current_revision(engine), migrate.head_revision()
    if current != needed:
        raise StartupRefused(
            f"the database schema is at revision {current or '(none)'}, this version needs {needed}: "
            "run `album-enhance db upgrade` first"
        )


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
