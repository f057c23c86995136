"""Done-when of scaling out: one API and two workers, each a real process in a directory of its own with no shared
disk, on the primary database (PostgreSQL in CI), a real Temporal dev server and a local S3-compatible server.
Every image of three albums is enhanced and readable through the API. On local storage in two directories the
worker refuses to start, instead of failing images as MissingOriginal."""

import asyncio
import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench.throwaway import throwaway_database
from tests.conftest import temporal_address
from tests.factories import jpeg_bytes
from tests.reliability.processes import (
    ManagedProcess,
    ProcessSet,
    free_port,
    service_env,
    wait_for_http,
)
from tests.s3_server import S3Server

ALBUMS, IMAGES_PER_ALBUM = 3, 10
TIER, TIER_LONG_SIDE, TIER_COST = "TIER_1K", 1024, 2

pytestmark = pytest.mark.slow


@pytest.fixture
def fresh_db_url(primary_db_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of its own (the workers' reconcilers scan every batch), on the primary backend."""
    primary = make_url(primary_db_url)
    if primary.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'scaleout.db'}"
        return
    with throwaway_database(primary_db_url, "album_enhance_scaleout") as url:
        yield url


class Machines:
    """One folder per process, standing in for one machine each: nothing on disk is shared between them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sets: list[ProcessSet] = []

    def machine(self, name: str) -> ProcessSet:
        machine = ProcessSet(self.root / name)
        self.sets.append(machine)
        return machine

    def close(self) -> None:
        for machine in self.sets:
            machine.close()


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Machines]:
    started = Machines(tmp_path / "machines")
    try:
        yield started
    finally:
        started.close()


def db_upgrade(env: dict[str, str], cwd: Path) -> None:
    """`album-enhance db upgrade`, as the deployment's one-shot migration job runs it."""
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "db", "upgrade"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def stack_env(db_url: str, temporal: Client, **settings: object) -> dict[str, str]:
    return service_env(
        database_url=db_url,
        execution_mode="temporal",
        temporal_address=temporal_address(temporal),
        task_queue=f"scaleout-{uuid.uuid4().hex}",
        api_host="127.0.0.1",
        api_port=free_port(),
        rate_limit_enabled="false",
        image_workers=1,
        activity_heartbeat_timeout_seconds=5,
        reconcile_interval_seconds=3600,
        **settings,
    )


async def start_api(machine: ProcessSet, env: dict[str, str]) -> tuple[ManagedProcess, str]:
    api = machine.api(env)
    url = f"http://127.0.0.1:{env['API_PORT']}"
    await asyncio.to_thread(wait_for_http, f"{url}/healthz", api)
    return api, url


def create_user(env: dict[str, str], cwd: Path, tokens: int) -> dict[str, str]:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "users", "create", email, "--tokens", str(tokens), "--create"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return {"Authorization": f"Bearer {done.stdout.strip()}"}


async def activity_workers(temporal: Client, batch_ids: list[str]) -> set[str]:
    """The identities of the workers that ran an image of these batches, from the workflows' histories."""
    identities = set()
    for batch_id in batch_ids:
        async for event in temporal.get_workflow_handle(batch_id).fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                identities.add(event.activity_task_started_event_attributes.identity)
    return identities


async def test_one_api_two_workers_no_shared_disk_on_s3(
    fresh_db_url: str, temporal_env: WorkflowEnvironment, s3_server: S3Server, machines: Machines
) -> None:
    temporal = temporal_env.client
    env = stack_env(
        fresh_db_url,
        temporal,
        storage_url=f"s3://{s3_server.create_bucket()}/album-enhance",
        storage_endpoint_url=s3_server.endpoint_url,
    )
    api_machine = machines.machine("api")
    db_upgrade(env, api_machine.root / "cwd")
    workers = [machines.machine(f"worker-{n}").worker(env) for n in (1, 2)]
    _, api_url = await start_api(api_machine, env)
    headers = create_user(env, api_machine.root / "cwd", tokens=ALBUMS * IMAGES_PER_ALBUM * TIER_COST)

    async with httpx.AsyncClient(base_url=api_url, timeout=60, headers=headers) as http:
        batch_ids = []
        for a in range(ALBUMS):
            album = (await http.post("/api/albums", json={"name": f"album {a}"})).json()["id"]
            # 64-73 x 16 px to TIER_1K: four passes of the network, about a second of CPU each, so the 30 images
            # finish in time on cores that other work keeps busy too.
            photos = [
                ("files", (f"{i}.jpg", jpeg_bytes(64 + i, 16, (20 * a, 10 * i, 90)), "image/jpeg"))
                for i in range(IMAGES_PER_ALBUM)
            ]
            uploaded = await http.post(f"/api/albums/{album}/images", files=photos)
            assert uploaded.status_code == 201, uploaded.text
            started = await http.post(f"/api/albums/{album}/enhance", json={"tier": TIER})
            assert started.status_code == 200 and started.json()["queued"] == IMAGES_PER_ALBUM, started.text
            batch_ids.append(started.json()["batchId"])

        batches: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 240
        while not batches or any(batch["status"] in ("CHARGED", "RUNNING") for batch in batches.values()):
            assert time.monotonic() < deadline, f"batches not finished: {batches}"
            await asyncio.sleep(0.2)
            for batch_id in batch_ids:
                batches[batch_id] = (await http.get(f"/api/batches/{batch_id}")).json()
        assert all(w.alive() for w in workers), "a worker died"
        jobs = [job for batch in batches.values() for job in batch["jobs"]]
        assert len(jobs) == ALBUMS * IMAGES_PER_ALBUM
        assert {job["status"] for job in jobs} == {"COMPLETED"}, [j for j in jobs if j["status"] != "COMPLETED"]

        for job in jobs:
            result = await http.get(f"/api/jobs/{job['id']}/result", follow_redirects=True)
            assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
            assert str(result.url).startswith(s3_server.endpoint_url)  # served by the store, not the API
            with PILImage.open(io.BytesIO(result.content)) as enhanced:
                assert max(enhanced.size) == TIER_LONG_SIDE

    # Both workers took images: neither sat idle while the other did everything.
    identities = await activity_workers(temporal, batch_ids)
    assert len(identities) == 2, identities
    assert {identity.split("@")[0] for identity in identities} == {str(w.pid) for w in workers}
    # And no process wrote an image to its own disk.
    assert not [p for p in machines.root.rglob("*.jp*g")], "an image reached a local disk"


async def test_local_storage_in_two_directories_is_refused_at_worker_start(
    fresh_db_url: str, temporal_env: WorkflowEnvironment, machines: Machines
) -> None:
    env = stack_env(fresh_db_url, temporal_env.client)  # STORAGE_DIR: ./data/storage of each process's folder
    api_machine = machines.machine("api")
    db_upgrade(env, api_machine.root / "cwd")
    await start_api(api_machine, env)
    worker = machines.machine("worker").worker(env)
    exit_code = await asyncio.to_thread(worker.process.wait, 60)
    assert exit_code != 0
    log = worker.log_path.read_text()
    assert "worker refused to start" in log and "cannot see the API's originals" in log, log
    assert str(machines.root / "worker" / "cwd" / "data" / "storage") in log
