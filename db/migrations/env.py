"""Alembic environment: runs on the connection handed in by db.migrate, or on DATABASE_URL for the alembic CLI."""

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

from db import models  # noqa: F401  (registers the tables on SQLModel.metadata)


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite cannot ALTER most things: batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    from core.config import get_settings
    from db.session import make_engine

    engine = make_engine(get_settings().database_url)
    try:
        with engine.begin() as conn:
            run(conn)
    finally:
        engine.dispose()


main()
