"""The storage marker: proof that a process's storage is the one its database's keys point into.

The database holds one random marker (table `deployment`); the API, `album-enhance db upgrade` and `dev` write it
into their storage as an object. A worker reads both at start and refuses to run when its storage lacks the marker
or carries another one, instead of failing every image whose original it cannot see (a second worker on its own
disk used to refund images as MissingOriginal)."""

import asyncio
import logging
import secrets
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from core.contracts import delivery_of_workflow
from core.errors import StartupRefused
from db.models import Batch, Deployment
from db.session import session_scope
from storage.base import ObjectNotFound, Storage

log = logging.getLogger(__name__)

MARKER_KEY = "deployment/storage-marker"
SAME_STORAGE_HINT = (
    "every API and worker process must use the same storage (STORAGE_URL, e.g. s3://bucket/prefix; "
    "a local STORAGE_DIR only works when all processes share that folder)"
)


def _database_marker(engine: Engine) -> str | None:
    with session_scope(engine) as session:
        row = session.get(Deployment, 1)
        return row.storage_marker if row is not None else None


def _create_database_marker(engine: Engine) -> str:
    try:
        with session_scope(engine) as session:
            session.add(Deployment(id=1, storage_marker=secrets.token_hex(16)))
    except IntegrityError:
        pass  # another process created it first: theirs stands
    marker = _database_marker(engine)
    assert marker is not None
    return marker


def _storage_marker(storage: Storage) -> str | None:
    try:
        return storage.get(MARKER_KEY).decode()
    except ObjectNotFound:
        return None


def claim_storage(engine: Engine, storage: Storage) -> None:
    """Mark the storage as this deployment's (the writers of originals do this at start)."""
    marker = _database_marker(engine) or _create_database_marker(engine)
    found = _storage_marker(storage)
    if found is None:
        storage.put(MARKER_KEY, marker.encode())
    elif found != marker:
        raise StartupRefused(
            f"the storage {storage.location} belongs to another database (its marker is {found}, "
            f"this database's is {marker}): {SAME_STORAGE_HINT}"
        )


def claim_storage_if_reachable(engine: Engine, storage: Storage) -> None:
    """The API's claim at start: storage of another database is refused, but storage that cannot be reached now
    is left to the readiness probe (/readyz reports it) rather than keeping the API down; `db upgrade` marks the
    storage too, so workers can still check it."""
    try:
        claim_storage(engine, storage)
    except StartupRefused:
        raise
    except Exception:
        log.warning("could not write the storage marker to %s; /readyz reports the storage", storage.location)


def verify_storage(engine: Engine, storage: Storage) -> None:
    """Refuse to start unless the storage carries this database's marker (workers do this at start)."""
    marker = _database_marker(engine)
    if marker is None:
        raise StartupRefused(
            "the database has no storage marker yet: run `album-enhance db upgrade` (or start the API) "
            "with the same storage settings before starting workers"
        )
    found = _storage_marker(storage)
    if found != marker:
        what = "has no marker object" if found is None else f"carries another deployment's marker ({found})"
        raise StartupRefused(
            f"this worker's storage {storage.location} cannot see the API's originals: it {what} "
            f"'{MARKER_KEY}' (expected {marker}); {SAME_STORAGE_HINT}"
        )


FOREIGN_TASK_ERROR = "ForeignTask"


class ForeignTaskGuard(Interceptor):
    """Worker interceptor: an activity of a batch this worker's database does not hold is refused before it runs.

    A worker started on another database (another folder's `./data`, a wrong DATABASE_URL) but on the same
    Temporal task queues would otherwise take live work and fail or refund it in the wrong database while the real
    batch rows wait for ever. The refusal is retryable, so the task goes back to the queue for a worker of the
    batch's own deployment, and it is logged as an error each time: the stray worker must be stopped.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: set[str] = set()  # batches seen in this database: a batch row is never deleted

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Guarded(next, self)

    def holds(self, workflow_id: str) -> bool:
        """Whether this database holds the workflow's batch. A webhook delivery's workflow is let through: its
        row goes with a deleted endpoint while the workflow may still be retrying, and its attempt then ends it
        (a guard here would refuse it for a day instead)."""
        if delivery_of_workflow(workflow_id) is not None:
            return True
        if workflow_id not in self._known:
            with Session(self.engine) as session:
                if session.exec(select(Batch.id).where(col(Batch.id) == workflow_id)).first() is None:
                    return False
            self._known.add(workflow_id)
        return True


class _Guarded(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, guard: ForeignTaskGuard) -> None:
        super().__init__(next)
        self.guard = guard

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        workflow_id = activity.info().workflow_id
        if workflow_id and not await asyncio.to_thread(self.guard.holds, workflow_id):
            log.error(
                "refused a task of workflow %s: this worker's database has no such batch, so the task "
                "belongs to another deployment on the same Temporal task queue; stop this worker or give it that "
                "deployment's DATABASE_URL and storage",
                workflow_id,
            )
            raise ApplicationError(
                f"Workflow {workflow_id} is not in this worker's database (another deployment's task); refused",
                type=FOREIGN_TASK_ERROR,
            )
        return await super().execute_activity(input)
