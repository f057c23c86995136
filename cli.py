"""The `album-enhance` command: run the service, migrate its database, and manage users and tokens."""

import argparse
import asyncio
import secrets
import signal
from collections.abc import Sequence
from urllib.parse import urlsplit

import uvicorn
from sqlmodel import col, select

from api.deps import hash_api_key
from api.main import create_app
from core.config import Settings, get_settings
from core.errors import StartupRefused
from core.temporal_dev import start_dev_server
from db import ledger, migrate
from db.models import User
from db.session import check_schema, make_engine, session_scope
from services.deployment import claim_storage
from storage.factory import storage_from
from telemetry.logs import configure_logging
from telemetry.tracing import export_traces
from worker import run_worker


def new_api_key() -> str:
    """A fresh API key (only its hash is stored)."""
    return "ae_" + secrets.token_urlsafe(32)


def create_user(settings: Settings, email: str, tokens: int) -> str:
    """Create a user with an optional token grant and return the API key."""
    engine = make_engine(settings.database_url)
    check_schema(engine)
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
    """Grant tokens to a user and return the new balance."""
    engine = make_engine(settings.database_url)
    check_schema(engine)
    with session_scope(engine) as session:
        user = session.exec(select(User).where(col(User.email) == email)).first()
        if user is None:
            raise SystemExit(f"no user with email {email}")
        return ledger.grant(session, user.id, tokens, "cli:grant")


def upgrade_db(settings: Settings) -> str:
    """Migrate the database to this version's schema and mark the storage as this deployment's."""
    engine = make_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
        claim_storage(engine, storage_from(settings))
        return f"database at revision {migrate.current_revision(engine)}; storage marked"
    finally:
        engine.dispose()


async def _serve(settings: Settings, with_worker: bool) -> None:
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.api_host, port=settings.api_port))
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
    """Start the dev server (unless direct), a worker and the API in this process, on an upgraded database."""
    upgrade_db(settings)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    if direct:
        settings = settings.model_copy(update={"execution_mode": "direct"})
        print(
            f"album-enhance (direct mode, no Temporal)\n  API      {api_url}\n  API docs {api_url}/docs",
            flush=True,
        )
        asyncio.run(_serve(settings, with_worker=False))
        return
    host, _, port = settings.temporal_address.rpartition(":")
    server = start_dev_server(
        settings.temporal_db_file, int(port), settings.temporal_ui_port, settings.temporal_namespace
    )
    ui_host = urlsplit(f"//{host}").hostname or "localhost"
    print(
        "album-enhance (Temporal mode)\n"
        f"  API              {api_url}\n  API docs         {api_url}/docs\n"
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
    commands.add_parser("worker", help="run a Temporal worker only")
    db = commands.add_parser("db", help="manage the database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate the schema to this version (and mark the storage)")
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
        asyncio.run(_serve(settings, with_worker=False))
    elif args.command == "worker":
        asyncio.run(run_worker(settings))
    elif args.command == "db":
        print(upgrade_db(settings))
    elif args.command == "users":
        if args.tokens < 0:
            raise SystemExit("--tokens must not be negative")
        print(create_user(settings, args.email, args.tokens))
    elif args.command == "tokens":
        if args.amount <= 0:
            raise SystemExit("the amount must be positive")
        print(f"{args.email}: balance {grant_tokens(settings, args.email, args.amount)}")


if __name__ == "__main__":
    main()
