"""Schema migrations (Alembic): upgrade, downgrade, and the revision a database is at."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from core.errors import StartupRefused

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """A configuration that finds the migrations inside the installed package (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to a revision (the newest by default)."""
    with engine.begin() as connection:
        _refuse_unversioned_tables(connection)
        command.upgrade(alembic_config(connection), revision)


def _refuse_unversioned_tables(connection: Connection) -> None:
    # Tables without Alembic's version table were made by create_all before migrations existed: upgrading would
    # fail half-way on "table exists", and guessing which schema they have is worse than asking.
    tables = set(inspect(connection).get_table_names())
    if tables and "alembic_version" not in tables:
        raise StartupRefused(
            f"the database {connection.engine.url.render_as_string(hide_password=True)} has tables but no migration "
            "history (it predates migrations): move its data to a database made by `album-enhance db upgrade`, "
            "or for a development database delete it (./data) and start again"
        )


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to a revision ("base": no tables)."""
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def head_revision() -> str | None:
    """The revision this code needs."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
