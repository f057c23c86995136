"""The FastAPI application: wiring of settings, database, storage, launcher and routers."""

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import Engine
from temporalio.client import Client

from activities.batch import BatchActivities
from activities.webhooks import WebhookActivities
from api import health
from api.errors import install_error_handlers
from api.headers import SecurityHeaders
from api.limits import (
    BODIES,
    DOWNLOADS,
    EVENTS,
    ZIPS,
    AdmissionGate,
    BodyDeadline,
    BodyLimits,
    BodyReceiver,
    BodySizeLimit,
    Cap,
    FailedAuthThrottle,
    HealthLimiters,
    LongLivedBudgets,
)
from api.routes import (
    account,
    albums,
    auth,
    batch_events,
    batches,
    deletion,
    downloads,
    images,
    jobs,
    me,
    thumbnails,
    webhooks,
)
from api.state import AppState, install_state
from core.config import Settings, get_settings
from db.session import PoolSettings, check_schema, make_engine
from services.batches import engine_config, super_resolution_processes, verify_super_resolution
from services.deployment import claim_storage_if_reachable
from services.launcher import BatchLauncher, TemporalLauncher
from services.mail import mailer_from
from services.reconciler import reconcile_forever
from services.uploads import DecodeSlots
from services.webhooks import (
    TemporalWebhooks,
    WebhookLauncher,
    WebhookStarts,
    links_base,
    webhook_retry,
)
from storage.base import Storage
from storage.factory import storage_from
from telemetry.api import MeteredLauncher, add_metrics_route
from telemetry.tracing import instrument, temporal_interceptors
from web import app as web
from workflows.direct import DirectLauncher
from workflows.webhook_direct import DirectWebhooks

log = logging.getLogger(__name__)

api_router = APIRouter(prefix="/api")
for module in (
    me,
    albums,
    images,
    jobs,
    batches,
    batch_events,
    thumbnails,
    downloads,
    deletion,
    auth,
    account,
    webhooks,
):
    api_router.include_router(module.router)


async def _temporal_client(settings: Settings) -> Client | None:
    if settings.execution_mode == "direct":
        return None
    # Lazy: the API starts (and refunds failed starts) even while Temporal is unreachable.
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        lazy=True,
        interceptors=temporal_interceptors(),
    )


def _make_launcher(
    settings: Settings, client: Client | None, activities: BatchActivities, executor: ThreadPoolExecutor
) -> BatchLauncher:
    if client is None:
        return DirectLauncher(activities, executor, settings.direct_poll_interval_seconds)
    return TemporalLauncher(client, settings.task_queue, settings.workflow_start_timeout_seconds)


def _webhook_launcher(settings: Settings, client: Client | None, engine: Engine) -> WebhookLauncher:
    """Deliveries as workflows (Temporal mode), or in this process with the same attempts (direct mode)."""
    if client is not None:
        return TemporalWebhooks(
            client, settings.task_queue, webhook_retry(settings), settings.workflow_start_timeout_seconds
        )
    return DirectWebhooks(WebhookActivities.for_settings(engine, settings), webhook_retry(settings))


def _openapi_without_framework_422(app: FastAPI) -> dict[str, Any]:
    """The schema as served: request validation errors are 400 `{"error", "details"}`, never FastAPI's 422."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for route, operation in ((route, op) for route, path in schema["paths"].items() for op in path.values()):
            responses = operation.get("responses", {})
            if route.startswith("/api/"):
                # AdmissionGate and the database handlers can answer any API route so.
                responses.setdefault("503", _SATURATED_RESPONSE)
            if "requestBody" in operation:
                responses.setdefault("413", {"description": "Request body too large", "content": _ERROR_CONTENT})
                responses.setdefault(
                    "408", {"description": "Request body not received in time", "content": _ERROR_CONTENT}
                )
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
                # A string path parameter cannot fail validation; a body, query or header can.
                if "requestBody" in operation or any(p["in"] != "path" for p in operation.get("parameters", [])):
                    responses.setdefault("400", {"description": "Invalid request", "content": _ERROR_CONTENT})
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
_SATURATED_RESPONSE = {
    "description": "Saturated, or the database is unavailable: retry after `Retry-After` seconds",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": _ERROR_CONTENT,
}


def long_lived_budgets(settings: Settings) -> LongLivedBudgets:
    """The caps of the long-lived kinds of request, from the settings."""
    return LongLivedBudgets(
        {
            BODIES: Cap(settings.bodies_per_replica, settings.bodies_per_user),
            EVENTS: Cap(settings.events_per_replica, settings.events_per_user),
            DOWNLOADS: Cap(settings.downloads_per_replica, settings.downloads_per_user),
            ZIPS: Cap(settings.zips_per_replica, settings.zips_per_user),
        }
    )


def create_app(
    settings: Settings | None = None,
    wrap_launcher: Callable[[BatchLauncher], BatchLauncher] | None = None,
    storage: Storage | None = None,
) -> FastAPI:
    """Build the application for the given settings (the environment's by default). `wrap_launcher` decorates the
    batch launcher (e.g. a double that holds starts); `storage` replaces the one the settings name."""
    settings = settings or get_settings()
    budgets = long_lived_budgets(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run on this many threads: as many as requests are admitted (AdmissionGate).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_concurrency
        engine = make_engine(settings.database_url, PoolSettings.of(settings))
        check_schema(engine)
        store = storage if storage is not None else storage_from(settings)
        claim_storage_if_reachable(engine, store)
        if settings.execution_mode == "direct":  # this process enhances: its SR settings must run here
            verify_super_resolution(settings)
        executor = ThreadPoolExecutor(max_workers=settings.image_workers, thread_name_prefix="image")
        # Direct mode runs batches here: the network in child processes (started on first use), as a worker does.
        processes = super_resolution_processes(settings) if settings.execution_mode == "direct" else None
        client = await _temporal_client(settings)
        deliveries = _webhook_launcher(settings, client, engine)
        activities = BatchActivities(
            engine,
            store,
            settings.max_image_pixels,
            settings.activity_heartbeat_interval_seconds,
            settings.activity_progress_interval_seconds,
            engine_config=engine_config(settings),
            sr_processes=processes,
            on_webhooks=WebhookStarts(deliveries, asyncio.get_running_loop()),
            links_base=links_base(settings),
        )
        launcher: BatchLauncher = MeteredLauncher(_make_launcher(settings, client, activities, executor))
        if wrap_launcher is not None:
            launcher = wrap_launcher(launcher)
        install_state(
            app,
            AppState(
                settings=settings,
                engine=engine,
                storage=store,
                launcher=launcher,
                temporal_client=client,
                health_limiters=HealthLimiters(),
                decode_slots=DecodeSlots(settings.upload_decode_slots, settings.upload_decode_wait_seconds),
                budgets=budgets,
                event_reads=anyio.CapacityLimiter(settings.events_read_threads),
                auth_throttle=FailedAuthThrottle(
                    settings.auth_failures_per_address, settings.auth_failure_window_seconds
                ),
                mailer=mailer_from(settings),
                webhooks=deliveries,
            ),
        )
        reconciler = None
        if settings.execution_mode == "direct":
            reconciler = asyncio.create_task(
                reconcile_forever(engine, launcher, settings, store, direct=True, webhooks=deliveries)
            )
        try:
            yield
        finally:
            if reconciler is not None:
                reconciler.cancel()
            await launcher.aclose()
            await deliveries.aclose()
            executor.shutdown(wait=True, cancel_futures=True)
            if processes is not None:
                processes.close()
            engine.dispose()

    app = FastAPI(
        title="album-enhance",
        version="0.1.0",
        description="Batch-enhance every photo of an album, paid in tokens, run as durable Temporal workflows.",
        lifespan=lifespan,
        docs_url=None,  # served by the web package from local assets: /docs works offline
    )
    install_error_handlers(app)
    app.openapi = functools.partial(_openapi_without_framework_422, app)  # type: ignore[method-assign]
    # The size limit is outermost, so an oversized body is refused before it can wait for a slot; a body is then
    # received whole (its own budget and deadline) before the request asks for an admission slot.
    app.add_middleware(
        AdmissionGate,
        limit=settings.api_concurrency,
        timeout=settings.api_queue_timeout_seconds,
        exempt=health.HEALTH_PATHS,
        budgets=budgets,
    )
    body_limits = BodyLimits(settings.max_upload_bytes, settings.max_json_bytes)
    deadline = BodyDeadline(settings.request_body_timeout_seconds, settings.request_body_min_bytes_per_second)
    app.add_middleware(BodyReceiver, deadline=deadline, budgets=budgets)
    app.add_middleware(BodySizeLimit, limits=body_limits)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the guards' refusals included
    app.include_router(api_router)
    app.include_router(health.router)
    web.install(app, settings)
    instrument(app)
    add_metrics_route(app)
    return app
