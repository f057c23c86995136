"""The one settings object of the service, read from environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration; every field maps to an upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./data/album_enhance.db"
    storage_dir: Path = Path("./data/storage")
    execution_mode: Literal["temporal", "direct"] = "temporal"

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "album-enhance"
    temporal_ui_port: int = 8233
    temporal_db_file: Path = Path("./data/temporal.db")
    workflow_start_timeout_seconds: float = 10.0

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    max_batch_size: int = 20
    max_image_pixels: int = 60_000_000
    max_upload_bytes: int = 100 * 1024 * 1024
    max_files_per_upload: int = 50

    image_workers: int = Field(default=2, ge=1)
    activity_max_attempts: int = Field(default=5, ge=1)
    activity_initial_retry_seconds: float = 1.0
    activity_max_retry_seconds: float = 30.0
    activity_heartbeat_timeout_seconds: float = 10.0
    activity_start_to_close_seconds: float = 300.0
    # How often an image in progress heartbeats (and so how soon it notices a cancel); the worker sends every one.
    activity_heartbeat_interval_seconds: float = Field(default=0.5, gt=0)
    # A long image (e.g. super-resolution, tile by tile) shows its step on its job row and in the progress query
    # once it has run this long, and then at most this often; quick images publish nothing.
    activity_progress_interval_seconds: float = Field(default=2.0, gt=0)
    # Direct mode: how often a running batch reads its row for commands sent to another API process.
    direct_poll_interval_seconds: float = Field(default=0.5, gt=0)

    reconcile_interval_seconds: float = 60.0
    reconcile_grace_seconds: float = 30.0
    reconcile_refund_after_seconds: float = 3600.0

    rate_limit_enabled: bool = True
    rate_limit_requests: int = 5
    rate_limit_window_seconds: int = 60
    idempotency_ttl_seconds: int = 24 * 3600

    # Worker sizing. A worker runs IMAGE_WORKERS images through the engine at once and this many more activities
    # beside them: the next images are claimed and read, and batches' bookkeeping runs, while the engine threads
    # are busy, so with several batches the engine (not the orchestration) is what waits for nothing.
    worker_spare_activity_slots: int = Field(default=4, ge=0)


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
