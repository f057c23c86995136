"""Super-resolution in child processes: a small pool of interpreters that each enhance one image at a time.

The network's native call holds Python's lock for a whole tile (0.2 s on a quiet core, many seconds on a busy
one), so in the caller's interpreter it would stall every other thread: heartbeats, the event loop, an API.
Here the caller's thread only waits on a socket, relays each tile's progress and notices cancels, while a
child process runs `enhance_image` end to end (bytes in, encoded JPEG out).

- Children are fresh interpreters (`python -m imaging._child`: exec, never a fork of a threaded process) that
  import only this package. They start on first use, or all at once with `start()`.
- A cancel (the progress or wait callback raising) is sent to the child, which stops at its next tile; a child
  that has not stopped within `cancel_grace_seconds` is killed and replaced.
- A child that dies mid-image (a crash in the native runtime, an OOM kill, a SIGKILL), or that reports no
  progress for `stall_seconds`, fails that image with `EngineProcessError` (retryable: the next attempt gets a
  fresh child); the caller and the other children carry on.
- A child is recycled after `max_images` images, or once its resident memory after an image exceeds
  `max_rss_mb`, so fragmentation cannot grow a long-running worker without bound.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from imaging.config import DEFAULT_OUTPUT, EngineConfig, Output
from imaging.enhance import EnhancedImage, Progress
from imaging.errors import InvalidImageError
from imaging.sr import SuperResolutionUnavailableError

log = logging.getLogger(__name__)

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder that holds the imaging package
_STOP_TIMEOUT = 5.0  # an idle child exits as soon as its socket closes; give it this long before killing it


class EngineProcessError(RuntimeError):
    """The child process died or stalled in the middle of an image. Not the image's fault: retry it."""


@dataclass(frozen=True)
class ProcessLimits:
    """How many children, and when one is stopped, killed or replaced.

    processes: children (images enhanced at once). start_timeout_seconds: how long a new child may take to
    import and report ready. stall_seconds: the longest a child may go without reporting a tile before it
    counts as hung. cancel_grace_seconds: how long a cancelled child has to reach its next tile before it is
    killed. max_images / max_rss_mb: recycle a child after that many images, or when its resident memory
    after an image is above this.
    """

    processes: int = 1
    start_timeout_seconds: float = 60.0
    stall_seconds: float = 30.0
    cancel_grace_seconds: float = 2.0
    max_images: int = 200
    max_rss_mb: int = 2048

    def __post_init__(self) -> None:
        if self.processes < 1 or self.max_images < 1 or self.max_rss_mb < 1:
            raise ValueError("processes, max_images and max_rss_mb must be at least 1")
        if min(self.start_timeout_seconds, self.stall_seconds, self.cancel_grace_seconds) <= 0:
            raise ValueError("the timeouts of the SR processes must be positive")


# Messages. Parent -> child: the EngineConfig once, then per image a _Request and possibly _CANCEL.
# Child -> parent: _Ready once, then per request any number of _Tile and one of _Done / _Failed / _Stopped.


@dataclass(frozen=True)
class _Request:
    data: bytes
    long_side: int
    max_pixels: int
    output: Output = DEFAULT_OUTPUT


_CANCEL = "cancel"


@dataclass(frozen=True)
class _Ready:
    pid: int
    tile_seconds: float | None  # one warm-up tile of the configured size; None without the SR runtime
    unavailable: str | None  # why the SR runtime does not load in the child, if it does not


@dataclass(frozen=True)
class _Tile:
    done: int
    total: int


@dataclass(frozen=True)
class _Done:
    image: EnhancedImage
    rss_mb: float


@dataclass(frozen=True)
class _Failed:
    kind: str  # "invalid" | "unavailable" | "error"
    message: str
    rss_mb: float


@dataclass(frozen=True)
class _Stopped:
    """The child stopped at a tile because it was cancelled."""

    rss_mb: float


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    conn: Connection
    images: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid


Wait = Callable[[], None]


class SuperResolutionProcesses:
    """A pool of `limits.processes` child processes running `enhance_image` with one engine configuration.

    Thread-safe: each call to `enhance` takes a child for itself (waiting for one if all are busy).
    """

    def __init__(self, config: EngineConfig, limits: ProcessLimits) -> None:
        self.config = config
        self.limits = limits
        # One token per child slot: a running child, or None for a slot whose child starts on first use.
        self._slots: queue.Queue[_Child | None] = queue.Queue()
        for _ in range(limits.processes):
            self._slots.put(None)
        self._live: dict[int, _Child] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.tile_seconds: list[float] = []  # warm-up tile of each child started, for the start-up check

    # Lifecycle -----------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every child now (instead of on first use), all at once, and wait until each is ready."""
        slots = [self._slots.get() for _ in range(self.limits.processes)]
        launched = {n: self._launch() for n, slot in enumerate(slots) if slot is None}
        try:
            for n, child in launched.items():
                self._await_ready(child, _no_wait, 0.5)
                slots[n] = child
        finally:
            for n, child in launched.items():
                if slots[n] is not child:
                    self._kill(child)  # not ready: its slot stays empty, for a fresh child on first use
            for slot in slots:
                self._slots.put(slot)

    def close(self) -> None:
        """Stop every child (an image in progress is killed with it); the pool cannot be used afterwards."""
        with self._lock:
            self._closed = True
            children = list(self._live.values())
        for child in children:
            self._stop(child)

    def pids(self) -> list[int]:
        """The process ids of the running children."""
        with self._lock:
            return sorted(self._live)

    # Work ----------------------------------------------------------------------------------------------------------

    def enhance(
        self,
        data: bytes,
        long_side: int,
        max_pixels: int,
        on_progress: Progress,
        on_wait: Wait = lambda: None,
        wait_interval: float = 0.5,
        output: Output = DEFAULT_OUTPUT,
    ) -> EnhancedImage:
        """`enhance_image(data, long_side, max_pixels, config=self.config, on_progress=..., output=...)` in a child.

        on_progress(done, total) is called on this thread for every step the child reports; on_wait() at least
        every `wait_interval` seconds while this thread waits (for a free child or for the next tile). Whatever
        either raises cancels the image: the child stops at its next tile (or is killed after the grace) and
        the exception propagates unchanged. InvalidImageError and SuperResolutionUnavailableError come through
        as themselves; a child that dies or stalls raises EngineProcessError.
        """
        child = self._acquire(on_wait, wait_interval)
        keep = False
        try:
            answer = self._follow(
                child, _Request(data, long_side, max_pixels, output), on_progress, on_wait, wait_interval
            )
        except EngineProcessError:
            if child.process.poll() is None:
                self._kill(child)  # stalled
            raise
        except BaseException:
            # The caller's callback raised (a cancel): stop the child at its next tile, or kill it.
            keep = self._cancel(child)
            raise
        else:
            child.images += 1
            keep = self._reusable(child, answer.rss_mb)
        finally:
            self._release(child, keep)
        match answer:
            case _Done(image):
                return image
            case _Failed("invalid", text):
                raise InvalidImageError(text)
            case _Failed("unavailable", text):
                raise SuperResolutionUnavailableError(text)
            case _Failed(_, text):
                raise EngineProcessError(f"in the super-resolution process: {text}")
        raise AssertionError(answer)  # pragma: no cover

    def _follow(
        self, child: _Child, request: _Request, on_progress: Progress, on_wait: Wait, wait_interval: float
    ) -> _Done | _Failed:
        """Send the request and relay the child's reports until its answer (the callbacks may raise)."""
        try:
            child.conn.send(request)
        except OSError:
            raise self._died(child, "in the middle of an image") from None
        last_report = time.monotonic()
        while True:
            try:
                message = child.conn.recv() if child.conn.poll(wait_interval) else None
            except (EOFError, OSError):
                raise self._died(child, "in the middle of an image") from None
            match message:
                case None:
                    if time.monotonic() - last_report > self.limits.stall_seconds:
                        raise EngineProcessError(
                            f"the super-resolution process reported nothing for {self.limits.stall_seconds:g} s"
                        )
                    on_wait()
                    continue
                case _Tile(done, total):
                    on_progress(done, total)
                case _Done() | _Failed():
                    return message
                case _:
                    raise EngineProcessError(f"unexpected message from the super-resolution process: {message!r}")
            last_report = time.monotonic()

    def _cancel(self, child: _Child) -> bool:
        """Stop the child's image at its next tile; returns whether the child may be reused (else it is killed)."""
        try:
            child.conn.send(_CANCEL)
            deadline = time.monotonic() + self.limits.cancel_grace_seconds
            while (left := deadline - time.monotonic()) > 0 and child.conn.poll(left):
                message = child.conn.recv()
                if isinstance(message, _Stopped | _Done | _Failed):
                    child.images += 1
                    return self._reusable(child, message.rss_mb)
        except (EOFError, OSError):
            pass
        log.info(
            "super-resolution process %s did not stop within %gs of a cancel: killed",
            child.pid,
            self.limits.cancel_grace_seconds,
        )
        self._kill(child)
        return False

    # Children ------------------------------------------------------------------------------------------------------

    def _acquire(self, on_wait: Wait, wait_interval: float) -> _Child:
        """A child of our own: a free one, a fresh one for a free slot, or the next one freed."""
        while True:
            if self._closed:
                raise RuntimeError("the super-resolution processes are closed")
            try:
                slot = self._slots.get(timeout=wait_interval)
            except queue.Empty:
                on_wait()
                continue
            if slot is not None and slot.process.poll() is None:
                return slot
            if slot is not None:
                self._forget(slot)  # died while idle (e.g. killed from outside): replace it
            try:
                return self._spawn(on_wait, wait_interval)
            except BaseException:
                self._slots.put(None)
                raise

    def _release(self, child: _Child, keep: bool) -> None:
        """Give the slot back: with the child in it when `keep`, otherwise empty (the child stopped first)."""
        if keep and not self._closed:
            self._slots.put(child)
            return
        if child.process.poll() is None:
            self._stop(child)
        self._forget(child)
        self._slots.put(None)

    def _reusable(self, child: _Child, rss_mb: float) -> bool:
        if child.images >= self.limits.max_images or rss_mb > self.limits.max_rss_mb:
            log.info(
                "recycling super-resolution process %s after %s images (%.0f MB resident)",
                child.pid,
                child.images,
                rss_mb,
            )
            return False
        return True

    def _spawn(self, on_wait: Wait, wait_interval: float) -> _Child:
        child = self._launch()
        self._await_ready(child, on_wait, wait_interval)
        return child

    def _launch(self) -> _Child:
        """Start a child and send it the configuration (it warms up while we do something else)."""
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
        # One image per child on one core: no idle BLAS or OpenMP thread pools beside the network.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", str(self.config.sr_threads))
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", "imaging._child", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        child = _Child(process, Connection(ours.detach()))
        with self._lock:
            self._live[child.pid] = child
        with contextlib.suppress(OSError):  # it died at once: _await_ready says so
            child.conn.send(self.config)
        return child

    def _await_ready(self, child: _Child, on_wait: Wait, wait_interval: float) -> None:
        try:
            ready = self._ready(child, on_wait, wait_interval)
        except BaseException:
            self._kill(child)
            raise
        if ready.unavailable is not None and self.config.engine == "sr":
            log.warning("super-resolution process %s: the runtime does not load: %s", child.pid, ready.unavailable)
        if ready.tile_seconds is not None:
            self.tile_seconds.append(ready.tile_seconds)
        log.info("super-resolution process %s ready (warm-up tile %s s)", child.pid, ready.tile_seconds)

    def _ready(self, child: _Child, on_wait: Wait, wait_interval: float) -> _Ready:
        deadline = time.monotonic() + self.limits.start_timeout_seconds
        while time.monotonic() < deadline:
            try:
                if child.conn.poll(wait_interval):
                    message = child.conn.recv()
                    if isinstance(message, _Ready):
                        return message
                    raise EngineProcessError(f"unexpected first message from a super-resolution process: {message!r}")
            except (EOFError, OSError):
                raise self._died(child, "while starting") from None
            on_wait()
        raise EngineProcessError(
            f"a super-resolution process did not start within {self.limits.start_timeout_seconds:g} s"
        )

    def _died(self, child: _Child, when: str) -> EngineProcessError:
        try:
            code = child.process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill(child)
            code = child.process.returncode
        self._forget(child)
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        log.warning("super-resolution process %s %s %s", child.pid, how, when)
        return EngineProcessError(f"the super-resolution process {how} {when}")

    def _stop(self, child: _Child) -> None:
        """Let an idle child exit (its socket closes), killing it if it does not."""
        child.conn.close()
        try:
            child.process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        self._forget(child)

    def _kill(self, child: _Child) -> None:
        child.process.kill()
        child.process.wait()
        child.conn.close()
        self._forget(child)

    def _forget(self, child: _Child) -> None:
        child.conn.close()
        with self._lock:
            self._live.pop(child.pid, None)


def _no_wait() -> None:
    """Nothing to check while waiting."""
