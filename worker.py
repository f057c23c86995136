"""Temporal worker entry point: wiring only (settings, database, storage, activities, reconciler)."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.batch import BatchActivities
from core.config import Settings, get_settings
from db.session import PoolSettings, init_db, make_engine
from services.batches import engine_config
from services.launcher import StepSignals, TemporalLauncher
from services.reconciler import reconcile_forever
from storage.local import LocalStorage
from workflows.batch_enhance import BatchEnhanceWorkflow

# Each waiting activity poll holds an activity slot. Eager dispatch needs a free slot when the workflow task that
# schedules the next image completes; with as many pollers as spare slots (the default 5) none is ever free, and
# every image goes the long way through the task queue (about 40 ms more per image on the dev server).
ACTIVITY_POLLERS = 2


def activity_slots(settings: Settings) -> int:
    """Activities the batch queue's worker runs at once: one per engine thread, plus spares that prepare the next
    images and keep bookkeeping from queueing behind the engine (the engine itself stays at IMAGE_WORKERS threads)."""
    return settings.image_workers + settings.worker_spare_activity_slots


def worker_activities(engine: Engine, storage: LocalStorage, settings: Settings, client: Client) -> BatchActivities:
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
    )


def served_queues(settings: Settings) -> list[str]:
    """The task queues this worker process serves: WORKER_QUEUES, or every queue of the service."""
    queues = settings.worker_queues or [settings.task_queue, settings.sr_task_queue]
    return list(dict.fromkeys(queues))


def _worker(
    client: Client, settings: Settings, queue: str, activities: list[Callable[..., Any]], slots: int, pool: Executor
) -> Worker:
    heartbeat_throttle = timedelta(seconds=settings.activity_heartbeat_interval_seconds)
    return Worker(
        client,
        task_queue=queue,
        workflows=[BatchEnhanceWorkflow] if queue == settings.task_queue else [],
        activities=activities,
        activity_executor=pool,
        max_concurrent_activities=slots,
        max_concurrent_activity_task_polls=min(ACTIVITY_POLLERS, slots),
        # Every heartbeat reaches the server, so a cancel reaches an image in progress within about an interval.
        max_heartbeat_throttle_interval=heartbeat_throttle,
        default_heartbeat_throttle_interval=heartbeat_throttle,
    )


@contextlib.asynccontextmanager
async def running_workers(client: Client, settings: Settings, activities: BatchActivities) -> AsyncIterator[None]:
    """Run a worker for each served queue until the block ends: the batch queue runs the workflow and every
    activity in `activity_slots` (its images through the engine on IMAGE_WORKERS threads at a time); the
    super-resolution queue runs image activities on SR_WORKERS threads."""
    queues = served_queues(settings)
    with contextlib.ExitStack() as pools:
        workers = []
        if settings.task_queue in queues:
            slots = activity_slots(settings)
            pool = pools.enter_context(ThreadPoolExecutor(slots, thread_name_prefix="activity"))
            workers.append(_worker(client, settings, settings.task_queue, activities.all(), slots, pool))
        if settings.sr_task_queue in queues and settings.sr_task_queue != settings.task_queue:
            pool = pools.enter_context(ThreadPoolExecutor(settings.sr_workers, thread_name_prefix="sr"))
            sr_activities: list[Callable[..., Any]] = [activities.ungated().process_job]  # all its threads enhance
            workers.append(_worker(client, settings, settings.sr_task_queue, sr_activities, settings.sr_workers, pool))
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            yield


async def run_worker(settings: Settings) -> None:
    """Run the workers of the served queues and the reconciler until cancelled."""
    # Sized like the API's: at least one connection per image thread plus the reconciler's.
    pool = PoolSettings(settings.pool_size, settings.db_max_overflow, settings.db_pool_timeout_seconds)
    engine = make_engine(settings.database_url, pool)
    init_db(engine)
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    activities = worker_activities(engine, LocalStorage(settings.storage_dir), settings, client)
    launcher = TemporalLauncher(client, settings.task_queue, settings.workflow_start_timeout_seconds)
    logging.getLogger(__name__).info("serving task queues %s", ", ".join(served_queues(settings)))
    async with running_workers(client, settings, activities):
        await reconcile_forever(engine, launcher, settings)


def main() -> None:
    """Run a worker against TEMPORAL_ADDRESS."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_worker(get_settings()))


if __name__ == "__main__":
    main()
