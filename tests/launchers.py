"""Test doubles around the real batch launcher: hold or delay the workflow start (the window between the charge
and the start), without any test-only switch in the service itself."""

import asyncio
import threading

from core.contracts import BatchEnhanceInput
from services.launcher import BatchLauncher


class HeldLauncher:
    """Starts batches only once `release` is set; `holding` is set when a start is waiting."""

    def __init__(self, inner: BatchLauncher) -> None:
        self.inner = inner
        self.holding = threading.Event()
        self.release = threading.Event()

    async def start(self, inp: BatchEnhanceInput) -> None:
        self.holding.set()
        await asyncio.to_thread(self.release.wait)
        await self.inner.start(inp)

    async def cancel(self, batch_id: str) -> None:
        await self.inner.cancel(batch_id)

    async def pause(self, batch_id: str) -> None:
        await self.inner.pause(batch_id)

    async def resume(self, batch_id: str) -> None:
        await self.inner.resume(batch_id)

    async def aclose(self) -> None:
        self.release.set()
        await self.inner.aclose()


class DelayedLauncher(HeldLauncher):
    """Starts every batch `delay` seconds after it was charged (for crash tests run in another process)."""

    def __init__(self, inner: BatchLauncher, delay: float) -> None:
        super().__init__(inner)
        self.delay = delay

    async def start(self, inp: BatchEnhanceInput) -> None:
        await asyncio.sleep(self.delay)
        await self.inner.start(inp)


class FailingFirstStart(HeldLauncher):
    """The first start of a batch of `album_id` fails as an unreachable Temporal would; later ones go through.
    (Only that album's: the reconciler may start another test's stranded batch in a shared database first.)"""

    def __init__(self, inner: BatchLauncher, album_id: str) -> None:
        super().__init__(inner)
        self.release.set()
        self.album_id = album_id
        self.failed = False

    async def start(self, inp: BatchEnhanceInput) -> None:
        if not self.failed and inp.album_id == self.album_id:
            self.failed = True
            raise ConnectionError("the workflow service is unreachable (test double)")
        await self.inner.start(inp)
