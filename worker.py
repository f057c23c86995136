"""Temporal worker entry point: wiring only (settings, database, storage, activities, reconciler)."""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.batch import BatchActivities
from core.config import Settings, get_settings
from db.session import PoolSettings, init_db, make_engine
from services.launcher import StepSignals, TemporalLauncher
from services.reconciler import reconcile_forever
from storage.local import LocalStorage
from workflows.batch_enhance import BatchEnhanceWorkflow

# Each waiting activity poll holds an activity slot. Eager dispatch needs a free slot when the workflow task that
# schedules the next image completes; with as many pollers as spare slots (the default 5) none is ever free, and
# every image goes the long way through the task queue (about 40 ms more per image on the dev server).
ACTIVITY_POLLERS = 2


def activity_slots(settings: Settings) -> int:
    """Activities one worker runs at once: one per engine thread, plus spares that prepare the next images and keep
    bookkeeping from queueing behind the engine (the engine itself stays at IMAGE_WORKERS threads)."""
    return settings.image_workers + settings.worker_spare_activity_slots


def worker_executor(settings: Settings) -> ThreadPoolExecutor:
    """The thread pool the worker's activities run on: one thread per activity slot."""
    return ThreadPoolExecutor(max_workers=activity_slots(settings), thread_name_prefix="activity")


def worker_activities(engine: Engine, storage: LocalStorage, settings: Settings, client: Client) -> BatchActivities:
    """The activities as a worker runs them (call on the worker's event loop): a long job's steps go to its
    workflow as signals, and the engine runs on IMAGE_WORKERS threads whatever the activity slots."""
    return BatchActivities(
        engine,
        storage,
        settings.max_image_pixels,
        settings.activity_heartbeat_interval_seconds,
        settings.activity_progress_interval_seconds,
        on_step=StepSignals(client, asyncio.get_running_loop()),
        engine_threads=settings.image_workers,
    )


def build_worker(
    client: Client, settings: Settings, activities: BatchActivities, executor: ThreadPoolExecutor
) -> Worker:
    """A worker for the batch workflow, running activities on a thread pool sized by the settings
    (`worker_executor`). Activities are dispatched eagerly when the server allows it: the workflow task that
    schedules an image hands it straight to this worker, without a trip through the task queue."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[BatchEnhanceWorkflow],
        activities=activities.all(),
        activity_executor=executor,
        max_concurrent_activities=activity_slots(settings),
        max_concurrent_activity_task_polls=ACTIVITY_POLLERS,
        # Every heartbeat reaches the server, so a cancel reaches an image in progress within about an interval.
        max_heartbeat_throttle_interval=timedelta(seconds=settings.activity_heartbeat_interval_seconds),
        default_heartbeat_throttle_interval=timedelta(seconds=settings.activity_heartbeat_interval_seconds),
    )


async def run_worker(settings: Settings) -> None:
    """Run a worker and the reconciler until cancelled."""
    # Sized like the API's: at least one connection per image thread plus the reconciler's.
    pool = PoolSettings(settings.pool_size, settings.db_max_overflow, settings.db_pool_timeout_seconds)
    engine = make_engine(settings.database_url, pool)
    init_db(engine)
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    activities = worker_activities(engine, LocalStorage(settings.storage_dir), settings, client)
    launcher = TemporalLauncher(client, settings.task_queue, settings.workflow_start_timeout_seconds)
    with worker_executor(settings) as executor:
        worker = build_worker(client, settings, activities, executor)
        reconciler = asyncio.create_task(reconcile_forever(engine, launcher, settings))
        try:
            await worker.run()
        finally:
            reconciler.cancel()


def main() -> None:
    """Run a worker against TEMPORAL_ADDRESS."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_worker(get_settings()))


if __name__ == "__main__":
    main()
