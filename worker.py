"""Temporal worker entry point: wiring only (settings, schema and storage checks, activities, reconciler)."""

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Interceptor, Worker

from activities.batch import BatchActivities
from core.config import Settings, get_settings
from core.errors import StartupRefused
from db.session import PoolSettings, check_schema, make_engine
from services.deployment import verify_storage
from services.launcher import StepSignals, TemporalLauncher
from services.reconciler import reconcile_forever
from storage.factory import storage_from
from telemetry.logs import configure_logging
from telemetry.metrics import TemporalSdkMetrics, serve_worker_metrics
from telemetry.tracing import export_traces, temporal_interceptors
from telemetry.worker import ProductMetricsInterceptor
from workflows.batch_enhance import BatchEnhanceWorkflow


def build_worker(
    client: Client,
    settings: Settings,
    activities: BatchActivities,
    executor: ThreadPoolExecutor,
    interceptors: Sequence[Interceptor] = (),
) -> Worker:
    """A worker for the batch workflow, running image activities on a thread pool sized by the settings."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[BatchEnhanceWorkflow],
        activities=activities.all(),
        activity_executor=executor,
        max_concurrent_activities=settings.image_workers,
        interceptors=interceptors,
        # Every heartbeat reaches the server, so a cancel reaches an image in progress within about an interval.
        max_heartbeat_throttle_interval=timedelta(seconds=settings.activity_heartbeat_interval_seconds),
        default_heartbeat_throttle_interval=timedelta(seconds=settings.activity_heartbeat_interval_seconds),
    )


async def run_worker(settings: Settings) -> None:
    """Run a worker and the reconciler until cancelled."""
    # Sized like the API's: at least one connection per image thread plus the reconciler's.
    pool = PoolSettings(settings.pool_size, settings.db_max_overflow, settings.db_pool_timeout_seconds)
    engine = make_engine(settings.database_url, pool)
    check_schema(engine)
    storage = storage_from(settings)
    verify_storage(engine, storage)
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
    activities = BatchActivities(
        engine,
        storage,
        settings.max_image_pixels,
        settings.activity_heartbeat_interval_seconds,
        settings.activity_progress_interval_seconds,
        on_step=StepSignals(client, asyncio.get_running_loop()),
    )
    launcher = TemporalLauncher(client, settings.task_queue, settings.workflow_start_timeout_seconds)
    with ThreadPoolExecutor(max_workers=settings.image_workers, thread_name_prefix="activity") as executor:
        worker = build_worker(client, settings, activities, executor, [ProductMetricsInterceptor(engine)])
        reconciler = asyncio.create_task(reconcile_forever(engine, launcher, settings))
        drain = asyncio.create_task(_drain_forever(sdk_metrics)) if sdk_metrics is not None else None
        try:
            await worker.run()
        finally:
            reconciler.cancel()
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
