"""Real processes for the crash tests: the Temporal dev server, workers and the API, started from the test and
killed, frozen or stopped on demand. Every process runs in a session of its own, logs to a file, and is killed at
the end of its scope whatever happened."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from core.config import Settings
from core.temporal_dev import dev_server_command

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = PROJECT_ROOT / "worker.py"
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings_variables() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def service_env(**settings: object) -> dict[str, str]:
    """The environment of a service process: this one's, minus any inherited setting, plus the given settings."""
    inherited = _settings_variables()
    env = {key: value for key, value in os.environ.items() if key.upper() not in inherited}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update({name.upper(): str(value) for name, value in settings.items()})
    return env


# What a worker process shares with the harness's API to serve its batches: the same database, storage, Temporal
# server and task queues.
SHARED_WITH_THE_API = (
    "database_url",
    "storage_dir",
    "temporal_address",
    "task_queue",
    "sr_task_queue",
    "enhance_engine",
    "reconcile_interval_seconds",
)


def worker_env(settings: Settings, *names: str, **extra: object) -> dict[str, str]:
    """The environment of a worker process for the harness's API, with the harness's value of each named setting
    too, and `extra` settings as given."""
    values = {name: getattr(settings, name) for name in (*SHARED_WITH_THE_API, *names)}
    return service_env(execution_mode="temporal", **values, **extra)


class ManagedProcess:
    """One child process with its own session (so its whole group can be signalled) and a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path, cwd: Path) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> "ManagedProcess":
        self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.alive():
            os.killpg(self.pid, sig)

    def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL the process and its group, and reap it."""
        self._signal_group(signal.SIGKILL)
        return self.process.wait(timeout=timeout)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the process and wait for it to exit (SIGKILL if it does not)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def freeze(self, timeout: float = 5.0) -> None:
        """SIGSTOP the process and wait until every one of its threads is stopped."""
        self._signal_group(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not self._all_threads_stopped():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not stop")
            time.sleep(0.005)

    def thaw(self) -> None:
        """SIGCONT a frozen process."""
        self._signal_group(signal.SIGCONT)

    def _all_threads_stopped(self) -> bool:
        states = []
        for stat in Path(f"/proc/{self.pid}/task").glob("*/stat"):
            try:
                # The state is the first field after the command name, which is in parentheses.
                states.append(stat.read_text().rpartition(")")[2].split()[0])
            except (FileNotFoundError, IndexError):
                continue
        return bool(states) and all(state in ("T", "t") for state in states)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ProcessSet:
    """The processes of one test or module; `close` kills whatever still runs and shows the logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: list[ManagedProcess] = []

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> ManagedProcess:
        # The working folder is a scratch one, so no developer `.env` or `./data` leaks in or out.
        process = ManagedProcess(name, args, env, self.log_dir, self.root / "cwd")
        self.processes.append(process)
        return process.start()

    def worker(self, env: Mapping[str, str]) -> ManagedProcess:
        """`python worker.py`: a Temporal worker plus its reconciler."""
        return self.start("worker", [sys.executable, str(WORKER_SCRIPT)], env)

    def api(self, env: Mapping[str, str]) -> ManagedProcess:
        """`album-enhance api`: the HTTP API alone."""
        return self.start("api", [sys.executable, "-m", "cli", "api"], env)

    def delayed_api(self, env: Mapping[str, str], start_delay: float) -> ManagedProcess:
        """The API with a launcher that waits `start_delay` seconds between the charge and the start."""
        env = {**env, "START_DELAY_SECONDS": str(start_delay)}
        return self.start("api", [sys.executable, "-m", "tests.reliability.delayed_api"], env)

    def close(self) -> None:
        for process in self.processes:
            if process.alive():
                process.thaw()
                process.kill()
        for process in self.processes:
            print(f"----- {process.name} (pid {process.popen.pid if process.popen else '-'}) -----")
            print(process.log_tail())


@contextmanager
def process_set(root: Path) -> Iterator[ProcessSet]:
    processes = ProcessSet(root)
    try:
        yield processes
    finally:
        processes.close()


class DevServer:
    """The real Temporal dev server, its state in a file, restartable on the same ports and file."""

    def __init__(self, processes: ProcessSet, db_file: Path, namespace: str = "default") -> None:
        self.processes = processes
        self.db_file = db_file
        self.namespace = namespace
        self.port = free_port()
        self.ui_port = free_port()
        self.current: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Client:
        """Start the server and return a client once the namespace answers."""
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        command = dev_server_command(self.db_file, self.port, self.ui_port, self.namespace)
        self.current = self.processes.start("temporal", [*command, "--headless"], os.environ)
        return await self.connect()

    async def connect(self, within: float = STARTUP_TIMEOUT) -> Client:
        deadline = time.monotonic() + within
        while True:
            assert self.current is not None and self.current.alive(), "the Temporal dev server exited"
            try:
                client = await Client.connect(self.address, namespace=self.namespace)
                await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=self.namespace))
                return client
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM the server (a clean shutdown; its state stays in the file)."""
        assert self.current is not None
        return self.current.terminate()


def wait_for_http(url: str, process: ManagedProcess, timeout: float = STARTUP_TIMEOUT) -> None:
    """Poll a health URL until it answers 200 (fails early if the process died)."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


@contextmanager
def busy_cores(per_core: int = 2) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Busy-loop processes, `per_core` for every core of the machine, until the block ends."""
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range((os.cpu_count() or 1) * per_core)
    ]
    try:
        yield loops
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
