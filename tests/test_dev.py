"""`album-enhance dev` as a newcomer runs it: the Temporal dev server, a worker and the API come up as processes of
their own under one command, their output prefixed; one Ctrl+C stops every one of them, and if one dies the
others are stopped too."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.processes import free_port
from tests.test_cli import COMMAND

pytestmark = pytest.mark.slow


class Dev:
    def __init__(self, cwd: Path) -> None:
        self.api_port = free_port()
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(cwd),
            "API_PORT": str(self.api_port),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "TEMPORAL_UI_PORT": str(free_port()),
            "SR_PROCESSES": "1",
        }
        self.seen: dict[str, int] = {}
        self.log = cwd / "dev.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [COMMAND, "dev"], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_serving(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "super-resolution processes ready" not in self.output() and "serving task queues" not in self.output():
            assert self.process.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.2)
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.api_port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.2)

    def children(self) -> dict[str, int]:
        """The supervised processes by role, from /proc: their parent is `dev`."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rpartition(")")[2].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid != self.process.pid:
                continue
            if b"start-dev" in cmdline:
                found["temporal"] = int(stat.parent.name)
            elif cmdline[-1] in (b"worker", b"api"):
                found[cmdline[-1].decode()] = int(stat.parent.name)
        self.seen.update(found)
        return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    started = Dev(tmp_path)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            os.killpg(started.process.pid, signal.SIGKILL)
            started.process.wait()
        for pid in started.seen.values():
            if not gone(pid):
                os.killpg(pid, signal.SIGKILL)


def test_one_command_three_processes_one_ctrl_c(dev: Dev) -> None:
    dev.wait_until_serving()
    children = dev.children()
    assert set(children) == {"temporal", "worker", "api"}, dev.output()
    assert len(set(children.values())) == 3
    output = dev.output()
    for prefix in ("temporal |", "worker   |", "api      |"):
        assert prefix in output, output
    os.kill(dev.process.pid, signal.SIGINT)  # what Ctrl+C sends
    assert dev.process.wait(timeout=60) == 0, dev.output()
    assert all(gone(pid) for pid in children.values())
    assert "Traceback" not in dev.output()


def test_when_the_worker_dies_the_others_are_stopped(dev: Dev) -> None:
    dev.wait_until_serving()
    children = dev.children()
    os.kill(children["worker"], signal.SIGKILL)
    assert dev.process.wait(timeout=60) == 1
    assert "worker exited with status -9: stopping the others" in dev.output()
    assert all(gone(pid) for pid in children.values())
