"""The real API whose launcher waits START_DELAY_SECONDS between the charge and the workflow start, so crash tests
can kill it inside that window. Settings come from the environment as for `album-enhance api`."""

import os

import uvicorn

from api.main import create_app
from core.config import get_settings
from services.launcher import BatchLauncher
from tests.launchers import DelayedLauncher


def main() -> None:
    settings = get_settings()
    delay = float(os.environ["START_DELAY_SECONDS"])

    def delayed(launcher: BatchLauncher) -> BatchLauncher:
        return DelayedLauncher(launcher, delay)

    app = create_app(settings, wrap_launcher=delayed)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning")


if __name__ == "__main__":
    main()
