"""Liveness and readiness: /readyz reports each dependency with its latency and answers 503 when one is down.

The database going away is tested with the rest of the database outage in test_saturation.py."""

import socket
from pathlib import Path

from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, make_settings


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_liveness_depends_on_nothing(direct_harness: Harness) -> None:
    assert direct_harness.http.get("/healthz").json() == {"status": "ok"}


def test_ready_in_direct_mode_reports_each_check(direct_harness: Harness) -> None:
    response = direct_harness.http.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "storage"}  # no Temporal in direct mode
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert 0 <= check["latencyMs"] < 2000


def test_not_ready_when_storage_cannot_be_written(primary_db_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the storage folder should be")
    with LiveServer(make_settings(primary_db_url, LocalStorage(blocker))) as api:
        response = api.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "Not ready: storage"
    assert response.json()["checks"]["storage"]["status"] == "fail"
    assert response.json()["checks"]["database"]["status"] == "ok"


def test_not_ready_when_temporal_is_unreachable(primary_db_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        primary_db_url,
        LocalStorage(tmp_path / "storage"),
        execution_mode="temporal",
        temporal_address=f"127.0.0.1:{closed_port()}",
        readiness_timeout_seconds=1.0,
    )
    with LiveServer(settings) as api:
        response = api.http.get("/readyz")
        assert api.http.get("/healthz").status_code == 200  # alive, only not ready
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["temporal"]["status"] == "fail"
    assert checks["temporal"]["latencyMs"] < 1500  # bounded by the readiness timeout
    assert checks["database"]["status"] == checks["storage"]["status"] == "ok"
    assert response.json()["error"] == "Not ready: temporal"


async def test_ready_in_temporal_mode_when_the_frontend_answers(temporal_harness: Harness) -> None:
    async with temporal_harness.async_http() as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["temporal"]["status"] == "ok"
