"""The `album-enhance` command: run the service, migrate its database, and manage users and tokens."""

import argparse
import asyncio
import contextlib
import errno
import re
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import col, select

from api.main import create_app
from core.config import Settings, get_settings
from core.errors import Conflict, StartupRefused
from core.supervisor import Supervisor
from core.temporal_dev import dev_server_command, wait_for_port
from db import ledger, migrate
from db.models import User
from db.session import check_schema, make_engine, session_scope
from services import storage_sweep, users
from services.deployment import claim_storage
from storage.factory import storage_from
from telemetry.logs import configure_logging
from telemetry.tracing import export_traces
from worker import run_worker

# Deliberately loose (one @, a dot in the domain, no spaces): the address is an account name, never mailed to.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_email(email: str) -> str:
    """The email, or a one-line refusal."""
    if len(email) > 320 or not _EMAIL.match(email):
        raise SystemExit(f"not an email address: {email!r}")
    return email


def sqlite_file(database_url: str) -> Path | None:
    """The SQLite database file of a URL (absolute), or None for another database or an in-memory one."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve()


def describe_database(database_url: str) -> str:
    """Where the data is, for a message: the absolute file for SQLite, the URL without password otherwise."""
    path = sqlite_file(database_url)
    return str(path) if path is not None else make_url(database_url).render_as_string(hide_password=True)


def open_database(settings: Settings, create: bool, hint: str = "") -> Engine:
    """The engine, after saying on stderr which database is used; only `create` may make a new SQLite file (at
    the current schema). Any other database must be at the current schema already (`album-enhance db upgrade`)."""
    path = sqlite_file(settings.database_url)
    where = describe_database(settings.database_url)
    new = path is not None and not path.is_file()
    if new:
        if not create:
            raise SystemExit(
                f"no database at {where}: run this in the project folder, or set DATABASE_URL to the service's "
                f"database{hint}"
            )
        print(f"database: {where} (new)", file=sys.stderr)
    else:
        print(f"database: {where}", file=sys.stderr)
    engine = make_engine(settings.database_url)
    if new:
        migrate.upgrade(engine)
    else:
        check_schema(engine)
    return engine


def create_user(settings: Settings, email: str, tokens: int, create: bool = False) -> str:
    """Create a user with an optional token grant and return the API key."""
    engine = open_database(settings, create=create, hint=" (to make a new, empty one there, pass --create)")
    try:
        with session_scope(engine) as session:
            _, api_key = users.create_user(session, email, tokens, "cli:initial-grant")
    except Conflict as exc:
        raise SystemExit(exc.message) from None
    finally:
        engine.dispose()
    return api_key


def grant_tokens(settings: Settings, email: str, tokens: int) -> int:
    """Grant tokens to a user and return the new balance (the database must exist: this never creates one)."""
    engine = open_database(settings, create=False)
    try:
        with session_scope(engine) as session:
            user = session.exec(select(User).where(col(User.email) == email)).first()
            if user is None:
                raise SystemExit(f"no user with email {email} in {describe_database(settings.database_url)}")
            return ledger.grant(session, user.id, tokens, "cli:grant")
    except (OperationalError, ProgrammingError) as exc:
        # Typically a database without the service's tables.
        raise SystemExit(f"cannot use {describe_database(settings.database_url)}: {exc.orig}") from None
    finally:
        engine.dispose()


def sweep_storage(settings: Settings, grace_seconds: float, dry_run: bool) -> str:
    """Remove (or list) the stored objects no row refers to; the lines to print."""
    if grace_seconds < 0:
        raise SystemExit("--grace-seconds must not be negative")
    engine = open_database(settings, create=False)
    report = storage_sweep.sweep(engine, storage_from(settings), grace_seconds, dry_run)
    verb = "would remove" if dry_run else "removed"
    count = len(report.orphans) if dry_run else report.removed
    lines = [*report.orphans, f"{report.examined} objects examined; {verb} {count} that no row refers to"]
    return "\n".join(lines)


def port_in_use(host: str, port: int) -> bool:
    """Whether binding host:port fails because something listens there (as a second `make dev` would find)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def refuse_busy_ports(ports: dict[str, tuple[str, int]]) -> None:
    """Stop with one clear line if a port the command needs is taken, before anything starts."""
    busy = [f"{name} port {port} on {host}" for name, (host, port) in ports.items() if port_in_use(host, port)]
    if busy:
        raise SystemExit(
            f"album-enhance: {', '.join(busy)} already in use: is `make dev` running in another terminal? "
            "(stop it, or set API_PORT / TEMPORAL_ADDRESS / TEMPORAL_UI_PORT)"
        )


def upgrade_db(settings: Settings) -> str:
    """Migrate the database to this version's schema and mark the storage as this deployment's."""
    engine = make_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
        claim_storage(engine, storage_from(settings))
        return f"database at revision {migrate.current_revision(engine)}; storage marked"
    finally:
        engine.dispose()


def _serve(settings: Settings) -> None:
    """The API until Ctrl+C / SIGTERM."""
    # Open event streams last as long as their batch: give them a few seconds, then stop anyway on Ctrl+C.
    config = uvicorn.Config(
        create_app(settings), host=settings.api_host, port=settings.api_port, timeout_graceful_shutdown=5
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl+C once it has shut down cleanly
        uvicorn.Server(config).run()


def run_dev(settings: Settings, direct: bool) -> None:
    """Start the dev server, a worker and the API, each a process of its own supervised from this one (unless
    direct: then the API alone, running batches in-process), on an upgraded database."""
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    host, _, port = settings.temporal_address.rpartition(":")
    ports = {"API": (settings.api_host, settings.api_port)}
    if not direct:
        ports |= {"Temporal": ("127.0.0.1", int(port)), "Temporal UI": ("127.0.0.1", settings.temporal_ui_port)}
    refuse_busy_ports(ports)
    upgrade_db(settings)
    if direct:
        settings = settings.model_copy(update={"execution_mode": "direct"})
        print(
            f"album-enhance (direct mode, no Temporal)\n  Web app  {api_url}/\n  API docs {api_url}/docs",
            flush=True,
        )
        _serve(settings)
        return
    supervisor = Supervisor()
    settings.temporal_db_file.parent.mkdir(parents=True, exist_ok=True)
    command = dev_server_command(
        settings.temporal_db_file, int(port), settings.temporal_ui_port, settings.temporal_namespace
    )
    supervisor.start("temporal", command, stop_signal=signal.SIGTERM)
    try:
        wait_for_port("127.0.0.1", int(port))
    except TimeoutError:
        supervisor.stop()
        raise SystemExit("album-enhance dev: the Temporal dev server did not start") from None
    ui_host = urlsplit(f"//{host}").hostname or "localhost"
    supervisor.say(
        "album-enhance (Temporal mode: the dev server, a worker and the API, each a process; Ctrl+C stops all)\n"
        f"  Web app          {api_url}/\n  API docs         {api_url}/docs\n"
        f"  Temporal gRPC    {settings.temporal_address}\n"
        f"  Temporal Web UI  http://{ui_host}:{settings.temporal_ui_port}"
    )
    this_program = [sys.executable, "-m", "cli"]
    supervisor.start("worker", [*this_program, "worker"])
    supervisor.start("api", [*this_program, "api"])
    if supervisor.wait() != 0:
        raise SystemExit(1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="album-enhance", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="run the Temporal dev server, a worker and the API, each a process")
    dev.add_argument("--direct", action="store_true", help="run batches in the API process, without Temporal")
    commands.add_parser("api", help="run the API only")
    worker = commands.add_parser("worker", help="run a Temporal worker only")
    worker.add_argument(
        "--queues",
        type=lambda text: [queue.strip() for queue in text.split(",") if queue.strip()],
        help="comma-separated task queues to serve (default: WORKER_QUEUES, or every queue), e.g. album-enhance-sr",
    )
    db = commands.add_parser("db", help="manage the database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate the schema to this version (and mark the storage)")
    users = commands.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a user and print its API key")
    create.add_argument("email")
    create.add_argument("--tokens", type=int, default=0, help="tokens granted at creation")
    create.add_argument(
        "--create",
        action="store_true",
        help="make a new database if there is none (without it, a missing database is an error: a user created "
        "in a database the service does not use would get a key it rejects)",
    )
    tokens = commands.add_parser("tokens", help="manage tokens").add_subparsers(dest="tokens_command", required=True)
    grant = tokens.add_parser("grant", help="grant tokens to a user")
    grant.add_argument("email")
    grant.add_argument("amount", type=int)
    storage = commands.add_parser("storage", help="manage the stored files").add_subparsers(
        dest="storage_command", required=True
    )
    sweep_command = storage.add_parser("sweep", help="remove stored objects that no row refers to")
    sweep_command.add_argument("--dry-run", action="store_true", help="only list them")
    sweep_command.add_argument(
        "--grace-seconds",
        type=float,
        default=None,
        help="spare objects younger than this (default: STORAGE_SWEEP_GRACE_SECONDS)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_format)
    if args.command in ("dev", "api", "worker"):
        export_traces(settings.otel_exporter_otlp_endpoint, f"album-enhance-{args.command}")
    try:
        _run(args, settings)
    except StartupRefused as exc:
        raise SystemExit(f"album-enhance {args.command}: {exc}") from None


def _run(args: argparse.Namespace, settings: Settings) -> None:
    if args.command == "dev":
        run_dev(settings, args.direct)
    elif args.command == "api":
        refuse_busy_ports({"API": (settings.api_host, settings.api_port)})
        _serve(settings)
    elif args.command == "worker":
        if args.queues:
            settings = settings.model_copy(update={"worker_queues": args.queues})
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C, or `dev` stopping it: a clean stop, no traceback
            asyncio.run(run_worker(settings))
    elif args.command == "db":
        print(upgrade_db(settings))
    elif args.command == "users":
        if args.tokens < 0:
            raise SystemExit("--tokens must not be negative")
        print(create_user(settings, check_email(args.email), args.tokens, args.create))
    elif args.command == "storage":
        grace = args.grace_seconds if args.grace_seconds is not None else settings.storage_sweep_grace_seconds
        print(sweep_storage(settings, grace, args.dry_run))
    elif args.command == "tokens":
        if args.amount <= 0:
            raise SystemExit("the amount must be positive")
        print(f"{args.email}: balance {grant_tokens(settings, args.email, args.amount)}")


if __name__ == "__main__":
    main()
