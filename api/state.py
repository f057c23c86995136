"""What the running application holds, typed: built once by api/main.py's lifespan, read by the dependencies."""

from dataclasses import dataclass

import anyio
from sqlalchemy import Engine
from starlette.applications import Starlette
from temporalio.client import Client

from api.limits import FailedAuthThrottle, HealthLimiters, LongLivedBudgets
from core.config import Settings
from services.launcher import BatchLauncher
from services.mail import Mailer
from services.uploads import DecodeSlots
from services.webhooks import WebhookLauncher
from storage.base import Storage


@dataclass(frozen=True)
class AppState:
    settings: Settings
    engine: Engine
    storage: Storage
    launcher: BatchLauncher
    temporal_client: Client | None  # None in direct mode
    health_limiters: HealthLimiters
    decode_slots: DecodeSlots
    budgets: LongLivedBudgets  # the open long-lived requests (streams, downloads, bodies) against their caps
    auth_throttle: FailedAuthThrottle
    event_reads: anyio.CapacityLimiter  # the threads event streams may use at once for their database reads
    mailer: Mailer
    webhooks: WebhookLauncher | None = None  # starts webhook deliveries (on Temporal, or in this process)


_KEY = "album_enhance"  # the one attribute of Starlette's untyped app.state this code uses


def install_state(app: Starlette, state: AppState) -> None:
    setattr(app.state, _KEY, state)


def app_state(app: Starlette) -> AppState:
    """The application's state; it exists from start-up (the lifespan) on."""
    state = getattr(app.state, _KEY, None)
    if not isinstance(state, AppState):
        raise RuntimeError("the application has not started: its state is set by the lifespan")
    return state
