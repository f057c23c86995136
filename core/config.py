"""The one settings object of the service, read from environment variables."""

import ipaddress
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Connections kept beside the admitted requests: one for the readiness probe, one for the reconciler.
RESERVED_CONNECTIONS = 2
# Heartbeat intervals that must fit in the heartbeat timeout.
HEARTBEATS_PER_TIMEOUT = 4


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (containers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


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
    # The image activity's retries and timeouts (services.batches.retry_settings derives the workflow's
    # core.contracts.RetrySettings from these and SR_ACTIVITY_START_TO_CLOSE_SECONDS).
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
    # The reconciler also removes stored objects no row refers to (`album-enhance storage sweep`), at most this
    # often, sparing objects younger than the grace period (a write whose row is not committed yet).
    storage_sweep_interval_seconds: float = Field(default=3600.0, gt=0)
    storage_sweep_grace_seconds: float = Field(default=6 * 3600.0, ge=0)

    rate_limit_enabled: bool = True
    rate_limit_requests: int = 5
    rate_limit_window_seconds: int = 60
    idempotency_ttl_seconds: int = 24 * 3600
    # Wrong API keys from one client address within the window, then 429 until the oldest leaves it (per replica).
    auth_failures_per_address: int = Field(default=30, ge=1)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)

    # Saturation and bounded input. Each admitted request holds at most one database connection at a time, so
    # the pool must cover the admitted requests, the image threads of direct mode and the two reserved for the
    # readiness probe and the reconciler; settings that break this are refused at start.
    api_concurrency: int = Field(default=16, ge=1)  # requests served at once; also the threads for sync routes
    api_queue_timeout_seconds: float = Field(default=2.0, gt=0)  # wait for a slot, then 503
    db_pool_size: int | None = Field(default=None, ge=1)  # unset: exactly what the rule below needs (20)
    db_max_overflow: int = Field(default=0, ge=0)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)  # wait for a connection, then 503
    max_json_bytes: int = Field(default=64 * 1024, ge=1)  # any body that is not a multipart upload
    max_upload_pixels: int = Field(default=200_000_000, ge=1)  # declared pixels of all files of one upload
    upload_decode_slots: int = Field(default=2, ge=1)  # uploads decoded at once per process (~240 MB per 60 MP)
    upload_decode_wait_seconds: float = Field(default=10.0, gt=0)  # wait for a decode slot, then 503
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)  # per check of /readyz

    # Long-lived requests (docs/reliability.md) hold no admission slot while they wait on the network; each kind
    # has its own cap per replica (then 503) and per caller, i.e. API key (then 429). A request body must arrive
    # within REQUEST_BODY_TIMEOUT_SECONDS plus its size at REQUEST_BODY_MIN_BYTES_PER_SECOND (then 408). An event
    # stream ends after EVENTS_MAX_SECONDS; the client reconnects with Last-Event-ID and misses nothing.
    bodies_per_replica: int = Field(default=256, ge=1)
    bodies_per_user: int = Field(default=8, ge=1)
    request_body_timeout_seconds: float = Field(default=30.0, gt=0)
    request_body_min_bytes_per_second: int = Field(default=64 * 1024, ge=1)
    events_per_replica: int = Field(default=256, ge=1)
    events_per_user: int = Field(default=16, ge=1)
    events_max_seconds: float = Field(default=600.0, gt=0)
    events_read_threads: int = Field(default=2, ge=1)  # of the API_CONCURRENCY threads, what all streams' reads share
    downloads_per_replica: int = Field(default=64, ge=1)
    downloads_per_user: int = Field(default=8, ge=1)
    zips_per_replica: int = Field(default=4, ge=1)
    zips_per_user: int = Field(default=1, ge=1)

    # Worker sizing. A worker runs IMAGE_WORKERS images through the engine at once and this many more activities
    # beside them: the next images are claimed and read, and batches' bookkeeping runs, while the engine threads
    # are busy, so with several batches the engine (not the orchestration) is what waits for nothing.
    worker_spare_activity_slots: int = Field(default=4, ge=0)

    @property
    def connections_needed(self) -> int:
        return self.api_concurrency + self.image_workers + RESERVED_CONNECTIONS

    @property
    def pool_size(self) -> int:
        return self.db_pool_size if self.db_pool_size is not None else self.connections_needed

    @model_validator(mode="after")
    def _heartbeats_fit_their_timeout(self) -> "Settings":
        # The worker sends a heartbeat every interval from a thread that waits on nothing else (the network runs
        # in child processes): a few intervals of scheduling delay must fit in the timeout, on a loaded machine.
        if self.activity_heartbeat_timeout_seconds < HEARTBEATS_PER_TIMEOUT * self.activity_heartbeat_interval_seconds:
            raise ValueError(
                f"ACTIVITY_HEARTBEAT_TIMEOUT_SECONDS must be at least {HEARTBEATS_PER_TIMEOUT} x "
                "ACTIVITY_HEARTBEAT_INTERVAL_SECONDS"
            )
        if self.sr_tile_seconds <= self.activity_heartbeat_interval_seconds:
            raise ValueError("SR_TILE_SECONDS must be longer than ACTIVITY_HEARTBEAT_INTERVAL_SECONDS")
        return self

    @model_validator(mode="after")
    def _webhook_networks_are_cidrs(self) -> "Settings":
        for network in self.webhook_allowed_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"WEBHOOK_ALLOWED_NETWORKS: {network!r} is not a network (e.g. 127.0.0.0/8)") from None
        return self

    @model_validator(mode="after")
    def _pool_covers_concurrency(self) -> "Settings":
        if self.pool_size + self.db_max_overflow < self.connections_needed:
            raise ValueError(
                f"DB_POOL_SIZE + DB_MAX_OVERFLOW must be at least API_CONCURRENCY + IMAGE_WORKERS + "
                f"{RESERVED_CONNECTIONS} ({self.connections_needed})"
            )
        return self

    # Imaging engine: services.batches.engine_config derives imaging.EngineConfig from these, field by field (it
    # validates them); unset, a knob keeps the engine's own default (auto, upconv_7_photo, 1.5, 64, 1, ncnn, cpu, 0,
    # -1, true). auto runs the super-resolution network when the tier enlarges the source by SR_MIN_SCALE or more and
    # the runtime is installed; classic never does; sr requires it. SR_TILE_SIZE is in source pixels (memory grows
    # with its square); SR_NOISE -1..3 is the denoise level for a clean source, and SR_NOISE_AUTO raises it per image
    # for a compressed or noisy one. SR_RUNTIME and SR_DEVICE: ncnn on the cpu (the fastest measured) or vulkan,
    # onnxruntime on the cpu or cuda; SR_GPU_ID picks the GPU of cuda or vulkan.
    enhance_engine: Literal["auto", "classic", "sr"] | None = None
    sr_model: str | None = None
    sr_min_scale: float | None = None
    sr_tile_size: int | None = None
    sr_threads: int | None = None
    sr_runtime: Literal["ncnn", "onnxruntime"] | None = None
    sr_device: Literal["cpu", "cuda", "vulkan"] | None = None
    sr_gpu_id: int | None = None
    sr_noise: int | None = None
    sr_noise_auto: bool | None = None
    # The encoders of the output formats other than JPEG (unset: 90, 4, 80, 6, 6): WEBP_QUALITY 0..100 and
    # WEBP_METHOD 0..6 (effort), AVIF_QUALITY 0..100 and AVIF_SPEED 0..10 (10 the fastest), PNG_COMPRESS_LEVEL 0..9.
    webp_quality: int | None = None
    webp_method: int | None = None
    avif_quality: int | None = None
    avif_speed: int | None = None
    png_compress_level: int | None = None
    # Whether an enhance request that does not say (no `keepLocation`) keeps the photos' location (GPS and place
    # names) in the results; off: enhanced photos get shared.
    keep_location_default: bool = False
    # Images the network will enlarge run on their own task queue, so CPU-light and heavy (GPU) work scale apart;
    # a worker serves the queues WORKER_QUEUES names (empty: every queue, as `make dev` does).
    sr_task_queue: str = "album-enhance-sr"
    # The network runs in SR_PROCESSES child processes per worker (and per API process in direct mode), one image
    # each at a time: SR images run that many at once per worker, each on one core (SR_THREADS ncnn threads).
    # A child is recycled after SR_PROCESS_MAX_IMAGES images or once above SR_PROCESS_MAX_RSS_MB resident after
    # an image.
    sr_processes: int = Field(default_factory=lambda: available_cores(), ge=1)
    sr_process_max_images: int = Field(default=200, ge=1)
    sr_process_max_rss_mb: int = Field(default=1024, ge=64)
    # The longest one tile may take on the busiest machine a worker runs on. A child that reports no tile for
    # this long is taken for hung (killed; the image is retried in a fresh one), and an SR image's activity may
    # run a child's start-up plus its tiles and a few more (decoding, encoding) times this. A cancelled child that
    # has not reached its next tile after SR_CANCEL_GRACE_SECONDS is killed.
    sr_tile_seconds: float = Field(default=30.0, gt=0)
    sr_cancel_grace_seconds: float = Field(default=2.0, gt=0)
    # An SR image's time limit when its workflow input carries none of its own (a batch started by a version
    # before per-image limits); every new batch's SR images get theirs from their tiles and SR_TILE_SECONDS.
    sr_activity_start_to_close_seconds: float = Field(default=1800.0, gt=0)
    worker_queues: list[str] = Field(default_factory=list)

    # The web app and the API it uses: how often the event stream looks at the database, how often it sends a
    # keep-alive comment (proxies drop idle streams), and the thumbnails' longer side.
    events_poll_seconds: float = Field(default=0.5, gt=0)
    events_keepalive_seconds: float = Field(default=15.0, gt=0)
    thumbnail_size: int = Field(default=320, ge=64, le=1024)
    # Where a person gets more tokens (a shop, a plan page, a mailto: of the operator): the web app links it when
    # a balance is short. Unset, the page says to ask whoever runs the service.
    tokens_help_url: str | None = Field(default=None, pattern=r"^(https://|http://|mailto:)\S+$", max_length=500)

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

    # Webhooks (services/webhooks, activities/webhooks). A delivery's attempts back off exponentially (doubling)
    # from the initial interval to the maximum one, each bounded by WEBHOOK_ATTEMPT_TIMEOUT_SECONDS, until the
    # delivery has been tried for WEBHOOK_RETRY_FOR_SECONDS (24 h). An endpoint whose deliveries have failed for
    # WEBHOOK_DISABLE_AFTER_DAYS without one success is disabled. A rotated secret keeps signing beside the new
    # one for WEBHOOK_SECRET_GRACE_SECONDS. Receivers must be public HTTPS addresses, checked after DNS at every
    # attempt: WEBHOOK_ALLOWED_NETWORKS lists the CIDRs allowed anyway (e.g. ["127.0.0.0/8", "::1/128"] for a
    # receiver on this machine, as `make dev` and the tests set), WEBHOOK_ALLOW_HTTP allows plain http.
    # PUBLIC_URL (below, e.g. https://enhance.example.com) makes the links in events absolute; unset, they are paths.
    webhook_attempt_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_initial_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_max_interval_seconds: float = Field(default=3600.0, gt=0)
    webhook_retry_for_seconds: float = Field(default=24 * 3600.0, gt=0)
    webhook_disable_after_days: float = Field(default=5.0, gt=0)
    webhook_secret_grace_seconds: float = Field(default=24 * 3600.0, ge=0)
    webhook_allowed_networks: list[str] = Field(default_factory=list)
    webhook_allow_http: bool = False

    # Telemetry. Traces are exported over OTLP/HTTP only when an endpoint is set (e.g. http://collector:4318).
    otel_exporter_otlp_endpoint: str | None = None
    # A worker serves /metrics (product and Temporal SDK metrics) on this port when set; the API always does.
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"
    log_format: Literal["text", "json"] = "text"

    # Accounts for people (services/accounts.py). PUBLIC_URL is where people and clients reach the service: the
    # links in mails point there (unset: http://API_HOST:API_PORT), never to the Host a request claims, and so do
    # the links in webhook events (unset: paths). SMTP_URL sends mail
    # (smtp://user:password@host:587 with STARTTLS, smtps://...:465 for TLS from the start); unset, every mail is
    # written to the log instead (`make dev`). New accounts get SIGNUP_TOKENS once their email is verified.
    public_url: str | None = None
    smtp_url: str | None = None
    mail_from: str = "album-enhance <no-reply@localhost>"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    signup_tokens: int = Field(default=10, ge=0)
    # SIGNUP_OPEN=false: only operators create users (`album-enhance users create`).
    signup_open: bool = True
    # A session ends after this long without a request, and after SESSION_ABSOLUTE_SECONDS whatever happens.
    session_idle_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    session_absolute_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    verify_link_seconds: int = Field(default=48 * 3600, ge=60)
    reset_link_seconds: int = Field(default=3600, ge=60)
    # Sign-in and password-reset requests per AUTH_THROTTLE_WINDOW_SECONDS (a sliding window in the database, so
    # every replica shares it): per account (email) and per client address.
    auth_throttle_window_seconds: int = Field(default=15 * 60, ge=1)
    auth_throttle_per_account: int = Field(default=10, ge=1)
    auth_throttle_per_address: int = Field(default=50, ge=1)

    @property
    def web_url(self) -> str:
        """The web app's public base URL, without a trailing slash."""
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
