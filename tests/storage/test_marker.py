"""The storage marker: a worker whose storage cannot see the API's originals refuses to start."""

from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.errors import StartupRefused
from db import migrate
from db.session import make_engine
from services.deployment import MARKER_KEY, claim_storage, claim_storage_if_reachable, verify_storage
from storage.local import LocalStorage


@pytest.fixture
def fresh_engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    migrate.upgrade(engine)
    return engine


def test_a_claimed_storage_passes_and_a_claim_is_idempotent(fresh_engine: Engine, tmp_path: Path) -> None:
    shared = LocalStorage(tmp_path / "shared")
    claim_storage(fresh_engine, shared)
    marker = shared.get(MARKER_KEY)
    claim_storage(fresh_engine, LocalStorage(tmp_path / "shared"))  # a second API on the same storage
    assert shared.get(MARKER_KEY) == marker
    verify_storage(fresh_engine, LocalStorage(tmp_path / "shared"))


def test_a_worker_on_other_storage_is_refused(fresh_engine: Engine, tmp_path: Path) -> None:
    claim_storage(fresh_engine, LocalStorage(tmp_path / "api"))
    with pytest.raises(StartupRefused, match="cannot see the API's originals: it has no marker object") as refused:
        verify_storage(fresh_engine, LocalStorage(tmp_path / "worker"))
    assert "STORAGE_URL" in str(refused.value) and str(tmp_path / "worker") in str(refused.value)
    assert not LocalStorage(tmp_path / "worker").exists(MARKER_KEY)  # a worker never writes the marker


def test_storage_of_another_database_is_refused_to_api_and_worker(fresh_engine: Engine, tmp_path: Path) -> None:
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    migrate.upgrade(other)
    storage = LocalStorage(tmp_path / "storage")
    claim_storage(other, storage)
    with pytest.raises(StartupRefused, match="belongs to another database"):
        claim_storage(fresh_engine, storage)
    claim_storage(fresh_engine, LocalStorage(tmp_path / "mine"))
    with pytest.raises(StartupRefused, match="carries another deployment's marker"):
        verify_storage(fresh_engine, storage)


def test_a_worker_before_any_claim_is_told_to_upgrade_first(fresh_engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(StartupRefused, match="run `album-enhance db upgrade`"):
        verify_storage(fresh_engine, LocalStorage(tmp_path / "storage"))


def test_the_api_starts_on_unreachable_storage_but_not_on_another_deployments(
    fresh_engine: Engine, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the storage folder should be")
    claim_storage_if_reachable(fresh_engine, LocalStorage(blocker))  # left to /readyz, no exception
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    migrate.upgrade(other)
    claim_storage(other, LocalStorage(tmp_path / "theirs"))
    with pytest.raises(StartupRefused, match="belongs to another database"):
        claim_storage_if_reachable(fresh_engine, LocalStorage(tmp_path / "theirs"))
