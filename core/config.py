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
    # Direct mode: how often a running batch reads its row for commands sent to another API process.
    direct_poll_interval_seconds: float = Field(default=0.5, gt=0)

    reconcile_interval_seconds: float = 60.0
    reconcile_grace_seconds: float = 30.0
    reconcile_refund_after_seconds: float = 3600.0

    rate_limit_enabled: bool = True
    rate_limit_requests: int = 5
    rate_limit_window_seconds: int = 60
    idempotency_ttl_seconds: int = 24 * 3600

    # Scale out: where originals and results live when processes run on several machines.
    # STORAGE_URL: s3://bucket/prefix for any S3-compatible store, or file://path; unset, STORAGE_DIR is used.
    # S3 credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
    storage_url: str | None = None
    storage_endpoint_url: str | None = None  # MinIO, R2, Ceph...; unset: AWS S3
    storage_public_endpoint_url: str | None = None  # the store's host as clients see it, for presigned URLs
    storage_region: str | None = None
    # Results are served by redirecting to a short-lived presigned URL when the backend has them.
    storage_presigned_urls: bool = True
    storage_presign_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)

    # Telemetry. Traces are exported over OTLP/HTTP only when an endpoint is set (e.g. http://collector:4318).
    otel_exporter_otlp_endpoint: str | None = None
    # A worker serves /metrics (product and Temporal SDK metrics) on this port when set; the API always does.
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"
    log_format: Literal["text", "json"] = "text"


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
