"""Liveness (/healthz: the process answers) and readiness (/readyz: its dependencies answer, each timed)."""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from temporalio.client import Client

from api.state import app_state
from storage.base import Storage

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

# Probes go around the admission gate (a saturated replica is alive, and its readiness is what they measure).
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP. Depends on nothing, so a database outage does not restart it.

    Async on purpose: a sync route would need one of the route threads, which saturation can take."""
    return {"status": "ok"}


def _database_check(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _storage_check(storage: Storage) -> None:
    key = f"health/probe-{uuid.uuid4().hex}"
    storage.put(key, b"ok")
    try:
        if storage.get(key) != b"ok":
            raise OSError("storage returned other bytes than written")
    finally:
        storage.delete(key)


async def _temporal_check(client: Client, seconds: float) -> None:
    if not await client.service_client.check_health(timeout=timedelta(seconds=seconds)):
        raise RuntimeError("Temporal frontend reports not serving")


async def _timed(check: Callable[[], Awaitable[None]], seconds: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(seconds):
            await check()
        result: dict[str, Any] = {"status": "ok"}
    except TimeoutError:
        result = {"status": "fail", "error": f"no answer within {seconds:g} s"}
    except Exception as exc:  # any failure of a dependency means "not ready", never a 500
        log.warning("readiness check failed: %r", exc)
        # The class only: driver messages can name hosts and users.
        result = {"status": "fail", "error": type(exc).__name__}
    result["latencyMs"] = round((time.perf_counter() - started) * 1000, 1)
    return result


@router.get("/readyz", responses={503: {"description": "A dependency is not ready; `checks` says which"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database, the storage and, in Temporal mode, the Temporal frontend answer in time."""
    state = app_state(request.app)
    timeout = state.settings.readiness_timeout_seconds
    limiters = state.health_limiters
    client = state.temporal_client

    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": lambda: limiters.run("database", lambda: _database_check(state.engine)),
        "storage": lambda: limiters.run("storage", lambda: _storage_check(state.storage)),
    }
    if client is not None:
        checks["temporal"] = lambda: _temporal_check(client, timeout)
    results = await asyncio.gather(*(_timed(check, timeout) for check in checks.values()))
    report = dict(zip(checks, results, strict=True))
    failing = [name for name, result in report.items() if result["status"] != "ok"]
    if failing:
        return JSONResponse({"error": f"Not ready: {', '.join(failing)}", "checks": report}, status_code=503)
    return JSONResponse({"status": "ready", "checks": report})
