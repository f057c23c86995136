"""Saturation and database trouble are answered with 503 `{"error"}` and Retry-After, never a 500 or a hang."""

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from api.state import app_state
from core.config import Settings
from storage.local import LocalStorage
from tests.conftest import LiveServer, engine_for, make_settings, wait_until
from tests.db_helpers import balance
from tests.factories import make_album_with_images, make_user
from tests.tcp_proxy import TcpProxy


@contextlib.contextmanager
def album_locked(engine: Engine, album_id: str) -> Iterator[None]:
    """Hold the album's row lock (PostgreSQL) or the write lock (SQLite) in another transaction."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(text("UPDATE album SET name = name WHERE id = :id"), {"id": album_id})
        try:
            yield
        finally:
            connection.rollback()


def test_saturated_replica_answers_503_at_once_then_recovers(db_url: str, tmp_path: Path) -> None:
    """Two slots, both held by enhance requests waiting for a lock: the next request is refused, not queued."""
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(db_url, storage, api_concurrency=2, api_queue_timeout_seconds=0.2)
    engine = engine_for(db_url)
    user, album, _ = make_album_with_images(engine, storage, 1, tokens=100)
    with LiveServer(settings) as api, ThreadPoolExecutor(max_workers=2) as pool:
        with album_locked(engine, album):
            enhances = [
                pool.submit(api.http.post, f"/api/albums/{album}/enhance", headers=user.headers, json=body)
                for body in ({"tier": "TIER_1K"}, {"tier": "TIER_2K"})
            ]
            refused: list[httpx.Response] = []

            def me_refused() -> bool:
                refused.append(api.http.get("/api/me", headers=user.headers))
                return refused[-1].status_code == 503

            wait_until(me_refused)
            assert {r.status_code for r in refused} <= {200, 503}
            assert refused[-1].json() == {"error": "Server busy; retry shortly"}
            assert refused[-1].headers["Retry-After"] == "1"
            assert api.http.get("/healthz").status_code == 200  # probes go around the gate
        assert sorted(f.result().status_code for f in enhances) == [200, 200]
        assert api.http.get("/api/me", headers=user.headers).status_code == 200
    assert balance(engine, user.id) == 100 - 2 - 5


def test_no_connection_within_the_pool_timeout_is_503(db_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(
        db_url, storage, api_concurrency=1, image_workers=1, db_pool_size=4, db_pool_timeout_seconds=0.2
    )
    user = make_user(engine_for(db_url))
    with LiveServer(settings) as api:
        assert api.http.get("/api/me", headers=user.headers).status_code == 200
        engine: Engine = app_state(api.app).engine
        # The request's session is closed after its response is sent: on a loaded machine that can come later.
        wait_until(lambda: engine.pool.checkedout() == 0)  # type: ignore[attr-defined]
        with contextlib.ExitStack() as held:
            for _ in range(settings.pool_size):
                held.enter_context(engine.connect())
            response = api.http.get("/api/me", headers=user.headers)
        assert response.status_code == 503
        assert response.json() == {"error": "Database busy; retry shortly"}
        assert response.headers["Retry-After"] == "1"
        assert api.http.get("/api/me", headers=user.headers).status_code == 200


def test_settings_whose_pool_cannot_serve_the_admitted_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="DB_POOL_SIZE"):
        Settings(api_concurrency=30, image_workers=2, db_pool_size=20, db_max_overflow=5)
    assert Settings(api_concurrency=30, image_workers=8).pool_size == 40  # unset: sized by the rule


@pytest.fixture
def proxied_postgres(postgres_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """The test database reached through a proxy the test can stop (the database going away)."""
    engine_for(postgres_url)  # tables created directly
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        proxy.stop()


def test_database_down_is_503_and_the_api_recovers(
    proxied_postgres: tuple[str, TcpProxy], postgres_url: str, tmp_path: Path
) -> None:
    url, proxy = proxied_postgres
    user = make_user(engine_for(postgres_url))
    settings = make_settings(url, LocalStorage(tmp_path / "storage"))
    with LiveServer(settings) as api:
        assert api.http.get("/api/me", headers=user.headers).status_code == 200
        proxy.stop()
        down = api.http.get("/api/me", headers=user.headers)
        assert down.status_code == 503
        assert down.json() == {"error": "Database unavailable; retry shortly"}
        assert down.headers["Retry-After"] == "1"
        ready = api.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["status"] == "fail"
        assert ready.json()["checks"]["storage"]["status"] == "ok"
        assert ready.json()["error"] == "Not ready: database"
        restarted = TcpProxy(proxy.target[0], proxy.target[1], port=proxy.port).start()
        try:
            wait_until(lambda: api.http.get("/api/me", headers=user.headers).status_code == 200)
            assert api.http.get("/readyz").status_code == 200
        finally:
            restarted.stop()
