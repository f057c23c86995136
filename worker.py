"""Temporal worker entry point: wiring only (settings, schema and storage checks, activities, reconciler)."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Interceptor, Worker

from activities.batch import BatchActivities
from activities.webhooks import WebhookActivities
from core.config import Settings, get_settings
from core.errors import StartupRefused
from db.session import PoolSettings, check_schema, make_engine
from imaging import SuperResolutionProcesses
from services.batches import engine_config, super_resolution_processes, verify_super_resolution
from services.deployment import ForeignTaskGuard, verify_storage
from services.launcher import StepSignals, TemporalLauncher
from services.reconciler import reconcile_forever
from services.webhooks import TemporalWebhooks, WebhookStarts, links_base, webhook_retry
from storage.base import Storage
from storage.factory import storage_from
from telemetry.logs import configure_logging
from telemetry.metrics import TemporalSdkMetrics, serve_worker_metrics
from telemetry.tracing import export_traces, temporal_interceptors
from telemetry.worker import ProductMetricsInterceptor
from workflows.batch_enhance import BatchEnhanceWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

# Each waiting activity poll holds an activity slot. Eager dispatch needs a free slot when the workflow task that
# schedules the next image completes; with as many pollers as spare slots (the default 5) none is ever free, and
# every image goes the long way through the task queue (about 40 ms more per image on the dev server).
ACTIVITY_POLLERS = 2

log = logging.getLogger(__name__)


def activity_slots(settings: Settings) -> int:
    """Activities the batch queue's worker runs at once: one per engine thread, plus spares that prepare the next
    images and keep bookkeeping from queueing behind the engine (the engine itself stays at IMAGE_WORKERS threads)."""
    return settings.image_workers + settings.worker_spare_activity_slots


def worker_activities(engine: Engine, storage: Storage, settings: Settings, client: Client) -> BatchActivities:
    """The activities as a worker runs them (call on the worker's event loop): a long job's steps go to its
    workflow as signals, and the batch queue's images are enhanced on at most IMAGE_WORKERS threads at a time."""
    return BatchActivities(
        engine,
        storage,
        settings.max_image_pixels,
        settings.activity_heartbeat_interval_seconds,
        settings.activity_progress_interval_seconds,
        on_step=StepSignals(client, asyncio.get_running_loop()),
        engine_config=engine_config(settings),
        engine_threads=settings.image_workers,
        on_webhooks=WebhookStarts(temporal_webhooks(client, settings), asyncio.get_running_loop()),
        links_base=links_base(settings),
    )


def temporal_webhooks(client: Client, settings: Settings) -> TemporalWebhooks:
    """Webhook deliveries as workflows on the batch queue (their activities are light: HTTP and bookkeeping)."""
    return TemporalWebhooks(
        client, settings.task_queue, webhook_retry(settings), settings.workflow_start_timeout_seconds
    )


def served_queues(settings: Settings) -> list[str]:
    """The task queues this worker process serves: WORKER_QUEUES, or every queue of the service."""
    queues = settings.worker_queues or [settings.task_queue, settings.sr_task_queue]
    return list(dict.fromkeys(queues))


def _worker(
    client: Client,
    settings: Settings,
    queue: str,
    activities: list[Callable[..., Any]],
    slots: int,
    pool: Executor,
    interceptors: Sequence[Interceptor],
) -> Worker:
    heartbeat_throttle = timedelta(seconds=settings.activity_heartbeat_interval_seconds)
    return Worker(
        client,
        task_queue=queue,
        workflows=[BatchEnhanceWorkflow, WebhookDeliveryWorkflow] if queue == settings.task_queue else [],
        activities=activities,
        activity_executor=pool,
        max_concurrent_activities=slots,
        max_concurrent_activity_task_polls=min(ACTIVITY_POLLERS, slots),
        interceptors=interceptors,
        # Every heartbeat reaches the server, so a cancel reaches an image in progress within about an interval.
        max_heartbeat_throttle_interval=heartbeat_throttle,
        default_heartbeat_throttle_interval=heartbeat_throttle,
    )


@contextlib.asynccontextmanager
async def running_workers(
    client: Client, settings: Settings, activities: BatchActivities, interceptors: Sequence[Interceptor] = ()
) -> AsyncIterator[None]:
    """Run a worker for each served queue until the block ends: the batch queue runs the workflow and every
    activity in `activity_slots` (its images through the engine on IMAGE_WORKERS threads at a time); the
    super-resolution queue runs SR_PROCESSES image activities at once, each waiting on a child process that runs
    the network (started here, stopped at the end)."""
    queues = served_queues(settings)
    processes = super_resolution_processes(settings)
    activities = activities.with_sr_processes(processes)
    # Outermost: a task of another deployment's batch is refused before anything else looks at it.
    interceptors = [ForeignTaskGuard(activities.engine), *interceptors]
    with contextlib.ExitStack() as pools:
        if processes is not None:
            pools.callback(processes.close)
            if settings.sr_task_queue in queues:
                await asyncio.to_thread(start_sr_processes, processes, settings)
        workers = []
        if settings.task_queue in queues:
            slots = activity_slots(settings)
            pool = pools.enter_context(ThreadPoolExecutor(slots, thread_name_prefix="activity"))
            served = [*activities.all(), *WebhookActivities.for_settings(activities.engine, settings).all()]
            workers.append(_worker(client, settings, settings.task_queue, served, slots, pool, interceptors))
        if settings.sr_task_queue in queues and settings.sr_task_queue != settings.task_queue:
            slots = settings.sr_processes  # one image per child process: a task is taken only when one is free
            pool = pools.enter_context(ThreadPoolExecutor(slots, thread_name_prefix="sr"))
            sr_activities: list[Callable[..., Any]] = [activities.ungated().process_job]  # the children gate it
            workers.append(_worker(client, settings, settings.sr_task_queue, sr_activities, slots, pool, interceptors))
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            yield


# A tile measured at start-up (a fresh process, its first tile) should be well inside SR_TILE_SECONDS: a loaded
# machine runs a tile several times slower than a quiet one.
TILE_SECONDS_MARGIN = 5


def start_sr_processes(processes: SuperResolutionProcesses, settings: Settings) -> None:
    """Start the SR child processes and check their first tile against SR_TILE_SECONDS (a warning: the machine may
    just be busy right now)."""
    processes.start()
    slowest = max(processes.tile_seconds, default=0.0)
    log.info("%s super-resolution processes ready, first tile %.2f s", settings.sr_processes, slowest)
    if slowest * TILE_SECONDS_MARGIN > settings.sr_tile_seconds:
        log.warning(
            "a tile took %.1f s at start-up, more than 1/%s of SR_TILE_SECONDS (%g s): under load, SR images may "
            "be taken for hung; raise SR_TILE_SECONDS or lower SR_TILE_SIZE",
            slowest,
            TILE_SECONDS_MARGIN,
            settings.sr_tile_seconds,
        )


async def run_worker(settings: Settings) -> None:
    """Run the workers of the served queues and the reconciler until cancelled."""
    engine = make_engine(settings.database_url, PoolSettings.of(settings))
    check_schema(engine)
    storage = storage_from(settings)
    verify_storage(engine, storage)
    verify_super_resolution(settings)
    runtime: Runtime | None = None
    sdk_metrics: TemporalSdkMetrics | None = None
    if settings.worker_metrics_port is not None:
        served = serve_worker_metrics(settings.worker_metrics_host, settings.worker_metrics_port)
        runtime, sdk_metrics = served.runtime, served.collector
    client = await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        interceptors=temporal_interceptors(),
        runtime=runtime,
    )
    activities = worker_activities(engine, storage, settings, client)
    launcher = TemporalLauncher(client, settings.task_queue, settings.workflow_start_timeout_seconds)
    log.info("serving task queues %s", ", ".join(served_queues(settings)))
    drain = asyncio.create_task(_drain_forever(sdk_metrics)) if sdk_metrics is not None else None
    try:
        async with running_workers(client, settings, activities, [ProductMetricsInterceptor(engine)]):
            await reconcile_forever(
                engine,
                launcher,
                settings,
                storage,
                ended_status=launcher.ended_status,
                webhooks=temporal_webhooks(client, settings),
            )
    finally:
        if drain is not None:
            drain.cancel()


async def _drain_forever(sdk_metrics: TemporalSdkMetrics) -> None:
    # The SDK's metric buffer drops updates once full: drain it between scrapes too.
    while True:
        await asyncio.sleep(5)
        with contextlib.suppress(Exception):
            sdk_metrics.drain()


def main() -> None:
    """Run a worker against TEMPORAL_ADDRESS."""
    settings = get_settings()
    configure_logging(settings.log_format)
    export_traces(settings.otel_exporter_otlp_endpoint, "album-enhance-worker")
    try:
        asyncio.run(run_worker(settings))
    except StartupRefused as exc:
        raise SystemExit(f"worker refused to start: {exc}") from None


if __name__ == "__main__":
    main()
