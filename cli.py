"""The `album-enhance` command: run the service locally and manage users and tokens."""

import argparse
import asyncio
import errno
import logging
import re
import secrets
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

from api.deps import hash_api_key
from api.main import create_app
from core.config import Settings, get_settings
from core.temporal_dev import start_dev_server
from db import ledger
from db.models import User
from db.session import init_db, make_engine, session_scope
from worker import run_worker


def new_api_key() -> str:
    """A fresh API key (only its hash is stored)."""
    return "ae_" + secrets.token_urlsafe(32)


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


def open_database(settings: Settings, create: bool) -> Engine:
    """The engine, after saying on stderr which database is used; only `create` may make a new SQLite file."""
    path = sqlite_file(settings.database_url)
    where = describe_database(settings.database_url)
    if path is not None and not path.is_file():
        if not create:
            raise SystemExit(
                f"no database at {where}: run this in the project folder, or set DATABASE_URL to the service's database"
            )
        print(f"database: {where} (new)", file=sys.stderr)
    else:
        print(f"database: {where}", file=sys.stderr)
    engine = make_engine(settings.database_url)
    if create:
        init_db(engine)
    return engine


def create_user(settings: Settings, email: str, tokens: int) -> str:
    """Create a user with an optional token grant and return the API key."""
    engine = open_database(settings, create=True)
    api_key = new_api_key()
    with session_scope(engine) as session:
        if session.exec(select(User).where(col(User.email) == email)).first() is not None:
            raise SystemExit(f"a user with email {email} exists already")
        user = User(email=email, api_key_hash=hash_api_key(api_key))
        session.add(user)
        session.flush()
        if tokens:
            ledger.grant(session, user.id, tokens, "cli:initial-grant")
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


async def _serve(settings: Settings, with_worker: bool) -> None:
    # Open event streams last as long as their batch: give them a few seconds, then stop anyway on Ctrl+C.
    config = uvicorn.Config(
        create_app(settings), host=settings.api_host, port=settings.api_port, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    tasks = [asyncio.create_task(server.serve())]
    if with_worker:
        tasks.append(asyncio.create_task(run_worker(settings)))
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()


def run_dev(settings: Settings, direct: bool) -> None:
    """Start the dev server (unless direct), a worker and the API in this process."""
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    host, _, port = settings.temporal_address.rpartition(":")
    ports = {"API": (settings.api_host, settings.api_port)}
    if not direct:
        ports |= {"Temporal": ("127.0.0.1", int(port)), "Temporal UI": ("127.0.0.1", settings.temporal_ui_port)}
    refuse_busy_ports(ports)
    if direct:
        settings = settings.model_copy(update={"execution_mode": "direct"})
        print(
            f"album-enhance (direct mode, no Temporal)\n  Web app  {api_url}/\n  API docs {api_url}/docs",
            flush=True,
        )
        asyncio.run(_serve(settings, with_worker=False))
        return
    server = start_dev_server(
        settings.temporal_db_file, int(port), settings.temporal_ui_port, settings.temporal_namespace
    )
    ui_host = urlsplit(f"//{host}").hostname or "localhost"
    print(
        "album-enhance (Temporal mode)\n"
        f"  Web app          {api_url}/\n  API docs         {api_url}/docs\n"
        f"  Temporal gRPC    {settings.temporal_address}\n"
        f"  Temporal Web UI  http://{ui_host}:{settings.temporal_ui_port}",
        flush=True,
    )
    try:
        asyncio.run(_serve(settings, with_worker=True))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="album-enhance", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="run the Temporal dev server, a worker and the API")
    dev.add_argument("--direct", action="store_true", help="run batches in the API process, without Temporal")
    commands.add_parser("api", help="run the API only")
    worker = commands.add_parser("worker", help="run a Temporal worker only")
    worker.add_argument(
        "--queues",
        type=lambda text: [queue.strip() for queue in text.split(",") if queue.strip()],
        help="comma-separated task queues to serve (default: WORKER_QUEUES, or every queue), e.g. album-enhance-sr",
    )
    users = commands.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a user and print its API key")
    create.add_argument("email")
    create.add_argument("--tokens", type=int, default=0, help="tokens granted at creation")
    tokens = commands.add_parser("tokens", help="manage tokens").add_subparsers(dest="tokens_command", required=True)
    grant = tokens.add_parser("grant", help="grant tokens to a user")
    grant.add_argument("email")
    grant.add_argument("amount", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if args.command == "dev":
        run_dev(settings, args.direct)
    elif args.command == "api":
        refuse_busy_ports({"API": (settings.api_host, settings.api_port)})
        asyncio.run(_serve(settings, with_worker=False))
    elif args.command == "worker":
        if args.queues:
            settings = settings.model_copy(update={"worker_queues": args.queues})
        asyncio.run(run_worker(settings))
    elif args.command == "users":
        if args.tokens < 0:
            raise SystemExit("--tokens must not be negative")
        print(create_user(settings, check_email(args.email), args.tokens))
    elif args.command == "tokens":
        if args.amount <= 0:
            raise SystemExit("the amount must be positive")
        print(f"{args.email}: balance {grant_tokens(settings, args.email, args.amount)}")


if __name__ == "__main__":
    main()
