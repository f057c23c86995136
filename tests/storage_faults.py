"""Storage wrappers for fault injection and for holding a batch at a chosen image (test control only)."""

import threading
from pathlib import Path
from typing import BinaryIO

from activities.batch import checkpoint
from storage.base import StoredObject
from storage.local import LocalStorage


class GatedStorage(LocalStorage):
    """Blocks reads of chosen originals until released; the held image stays cancellable at every checkpoint."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gated: set[str] = set()
        self.waiting = threading.Event()
        self.release = threading.Event()

    def gate(self, key: str) -> None:
        self.gated.add(key)

    def get(self, key: str) -> bytes:
        if key in self.gated:
            self.waiting.set()
            while not self.release.wait(0.05):
                checkpoint("held")  # a cancel reaches the held image as it would reach one being enhanced
        return super().get(key)


class FlakyStorage(LocalStorage):
    """Reads of originals fail the first `failures` times (None: always)."""

    def __init__(self, root: Path, failures: int | None) -> None:
        super().__init__(root)
        self.failures = failures
        self.calls = 0
        self.lock = threading.Lock()

    def get(self, key: str) -> bytes:
        with self.lock:
            self.calls += 1
            failing = self.failures is None or self.calls <= self.failures
        if failing:
            raise OSError("storage unavailable (injected)")
        return super().get(key)


class WriteGatedStorage(LocalStorage):
    """Holds the first write of a key under `prefix` before it happens, until released (a race made exact)."""

    def __init__(self, root: Path, prefix: str) -> None:
        super().__init__(root)
        self.prefix = prefix
        self.waiting = threading.Event()
        self.release = threading.Event()

    def _hold(self, key: str) -> None:
        if key.startswith(self.prefix) and not self.waiting.is_set():
            self.waiting.set()
            self.release.wait(60)

    def put(self, key: str, data: bytes) -> None:
        self._hold(key)
        super().put(key, data)

    def put_file(self, key: str, source: BinaryIO) -> None:
        self._hold(key)
        super().put_file(key, source)


class OpenGatedStorage(LocalStorage):
    """Holds the opening of one key (a download about to read it) until released."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.held_key: str | None = None
        self.waiting = threading.Event()
        self.release = threading.Event()

    def open(self, key: str) -> StoredObject:
        if key == self.held_key:
            self.waiting.set()
            self.release.wait(60)
        return super().open(key)
