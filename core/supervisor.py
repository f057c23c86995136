"""Several processes run from one terminal, as `album-enhance dev` runs the Temporal dev server, a worker and the
API: each its own process (so the worker's work never stalls the API's interpreter), every line of their output
prefixed with their name, one Ctrl+C (or SIGTERM) stopping all of them in order, and all stopped when one exits."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TextIO


@dataclass
class Supervised:
    name: str
    process: subprocess.Popen[bytes]
    stop_signal: signal.Signals
    pump: threading.Thread


class Supervisor:
    """Starts named commands, relays their output prefixed, and stops them in the reverse order of their start."""

    def __init__(self, out: TextIO = sys.stdout, stop_timeout: float = 15.0) -> None:
        self.out = out
        self.stop_timeout = stop_timeout
        self.children: list[Supervised] = []
        self._write = threading.Lock()
        self._width = 8

    def start(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGINT,
    ) -> subprocess.Popen[bytes]:
        """Start `args` in a session of its own (a terminal's Ctrl+C reaches only this supervisor, which stops the
        children in order); `stop_signal` asks it to stop (SIGINT: a Python program's KeyboardInterrupt)."""
        environment = dict(os.environ if env is None else env)
        environment.setdefault("PYTHONUNBUFFERED", "1")
        process = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
        self._width = max(self._width, len(name))
        assert process.stdout is not None
        pump = threading.Thread(target=self._relay, args=(name, process.stdout), name=f"{name}-output", daemon=True)
        pump.start()
        self.children.append(Supervised(name, process, stop_signal, pump))
        return process

    def say(self, line: str) -> None:
        """A line of the supervisor's own."""
        with self._write:
            self.out.write(line.rstrip("\n") + "\n")
            self.out.flush()

    def _relay(self, name: str, stream: "Iterator[bytes]") -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._write:
                self.out.write(f"{name:<{self._width}} | {line}\n")
                self.out.flush()

    def wait(self) -> int:
        """Until Ctrl+C / SIGTERM (returns 0) or until a child exits on its own (returns 1); then stop them all."""
        stopping = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        with _handling((signal.SIGINT, signal.SIGTERM), on_signal):
            while not stopping.wait(0.2):
                exited = next((child for child in self.children if child.process.poll() is not None), None)
                if exited is not None:
                    self.say(f"{exited.name} exited with status {exited.process.returncode}: stopping the others")
                    self.stop()
                    return 1
            self.stop()
        return 0

    def stop(self) -> None:
        """Ask every child to stop, newest first, each given `stop_timeout` seconds before it is killed (with
        every process of its session, e.g. a worker's SR processes)."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, child.stop_signal)
            deadline = time.monotonic() + self.stop_timeout
            while child.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)  # whatever is left of its session
            child.process.wait()
            child.pump.join(timeout=5)


@contextlib.contextmanager
def _handling(signals: Sequence[signal.Signals], handler: "signal._HANDLER") -> Iterator[None]:
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
