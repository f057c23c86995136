"""Migrations: the migrated schema is exactly the models' on SQLite and PostgreSQL, it goes down and up again,
and the processes refuse a database that is not at the newest revision."""

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from core.errors import StartupRefused
from db import migrate
from db.session import check_schema, make_engine
from tests.conftest import TEST_ENV
from tests.reliability.processes import WORKER_SCRIPT, service_env


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database with no tables at all, on each backend."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    if TEST_ENV.test_database_url is None:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
    server = make_url(TEST_ENV.test_database_url)
    name = f"album_enhance_migrate_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def autogenerate_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, SQLModel.metadata))


def schema_of(engine: Engine) -> dict[str, Any]:
    """Everything reflection sees of every table, including what autogenerate ignores (CHECKs, partial indexes)."""
    inspector = inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]), str(sorted(i.get("dialect_options", {}))))
                + tuple(str(v) for _, v in sorted(i.get("dialect_options", {}).items()))
                for i in inspector.get_indexes(table)
            ),
            "uniques": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            "checks": sorted(
                (c["name"], " ".join(c["sqltext"].split())) for c in inspector.get_check_constraints(table)
            ),
        }
    return schema


def test_the_migrated_schema_is_the_models(empty_db: Engine, tmp_path: Path) -> None:
    migrate.upgrade(empty_db)
    assert autogenerate_diff(empty_db) == []
    # And reflection matches a schema made by create_all, which autogenerate does not fully compare.
    migrated = schema_of(empty_db)
    assert migrated["user"]["checks"] and "token_balance >= 0" in migrated["user"]["checks"][0][1]
    refund_index = [i for i in migrated["token_transaction"]["indexes"] if i[0] == "uq_refund_reference"]
    assert refund_index and refund_index[0][2] is True
    if empty_db.dialect.name == "sqlite":
        reference = make_engine(f"sqlite:///{tmp_path / 'create_all.db'}")
        SQLModel.metadata.create_all(reference)
        assert migrated == schema_of(reference)
        reference.dispose()
    else:
        assert "REFUND" in str(refund_index[0][4:])  # partial: only refunds are unique per reference
        with empty_db.begin() as conn:
            conn.execute(text("CREATE SCHEMA create_all"))
            SQLModel.metadata.create_all(conn.execution_options(schema_translate_map={None: "create_all"}))
        with empty_db.connect() as conn:
            conn.execute(text("SET search_path TO create_all"))
            conn.commit()
            assert migrated == schema_of(conn)  # type: ignore[arg-type]


def test_upgrade_downgrade_upgrade(empty_db: Engine) -> None:
    migrate.upgrade(empty_db)
    first = schema_of(empty_db)
    migrate.downgrade(empty_db, "base")
    assert set(inspect(empty_db).get_table_names()) <= {"alembic_version"}
    assert migrate.current_revision(empty_db) is None
    migrate.upgrade(empty_db)
    assert schema_of(empty_db) == first and autogenerate_diff(empty_db) == []


def test_check_schema_refuses_until_upgraded(empty_db: Engine) -> None:
    with pytest.raises(StartupRefused, match=r"at revision \(none\), this version needs .*album-enhance db upgrade"):
        check_schema(empty_db)
    migrate.upgrade(empty_db)
    check_schema(empty_db)
    assert migrate.current_revision(empty_db) == migrate.head_revision()


def run(args: list[str], tmp_path: Path, **settings: object) -> subprocess.CompletedProcess[str]:
    env = service_env(storage_dir=tmp_path / "storage", temporal_address="127.0.0.1:1", **settings)
    return subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_api_and_worker_refuse_an_old_schema_and_db_upgrade_fixes_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    worker = run([sys.executable, str(WORKER_SCRIPT)], tmp_path, database_url=url)
    assert worker.returncode != 0
    assert "worker refused to start" in worker.stderr and "run `album-enhance db upgrade` first" in worker.stderr
    api = run([sys.executable, "-m", "cli", "api"], tmp_path, database_url=url, api_port=0)
    assert api.returncode != 0 and "run `album-enhance db upgrade` first" in api.stderr

    upgraded = run([sys.executable, "-m", "cli", "db", "upgrade"], tmp_path, database_url=url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"database at revision {migrate.head_revision()}" in upgraded.stdout
    engine = make_engine(url)
    check_schema(engine)
    engine.dispose()
    assert (tmp_path / "storage" / "deployment" / "storage-marker").is_file()
    again = run([sys.executable, "-m", "cli", "db", "upgrade"], tmp_path, database_url=url)
    assert again.returncode == 0, again.stderr  # idempotent


def test_a_database_from_before_migrations_is_refused_not_half_upgraded(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'legacy.db'}")
    SQLModel.metadata.create_all(engine)
    with pytest.raises(StartupRefused, match="has tables but no migration history"):
        migrate.upgrade(engine)
    assert migrate.current_revision(engine) is None
    engine.dispose()
