"""Super-resolution in child processes: the same output as in-process, progress relayed tile by tile, cancels that
stop the child at its next tile (or kill it after the grace), and children that die, hang or grow replaced.

Kills and freezes happen from inside the progress callback, at a known tile: nothing here waits on timing except
the grace and stall limits under test, which are short."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from imaging import (
    EngineConfig,
    EngineProcessError,
    InvalidImageError,
    ProcessLimits,
    SuperResolutionProcesses,
    enhance_image,
)
from tests.conftest import wait_until
from tests.factories import FIXTURES
from tests.imaging.images import encode

pytestmark = pytest.mark.usefixtures("sr_runtime")
SR = EngineConfig(engine="sr", sr_tile_size=32)
TILES = 4  # 48 x 48 in 32-px tiles, one pass to 96


class Cancelled(Exception):
    pass


def photo(size: int = 48) -> bytes:
    with Image.open(FIXTURES / "astronaut.png") as image:
        pixels = np.asarray(image.convert("RGB"))[100 : 100 + size, 150 : 150 + size]
    return encode(np.ascontiguousarray(pixels), "PNG")


# For a child stopped or killed at its first tile: 16 tiles, so it is still in the middle of the image when the signal
# lands, however late this thread runs.
LONG = photo(128)


@pytest.fixture
def pool(request: pytest.FixtureRequest) -> Iterator[SuperResolutionProcesses]:
    limits = getattr(request, "param", ProcessLimits(processes=1, cancel_grace_seconds=0.5, stall_seconds=1.0))
    processes = SuperResolutionProcesses(SR, limits)
    try:
        yield processes
    finally:
        processes.close()


def only_child(pool: SuperResolutionProcesses) -> int:
    (pid,) = pool.pids()
    return pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: reaped children vanish, unreaped ones would show "Z".
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_same_bytes_as_in_process_and_every_tile_reported(pool: SuperResolutionProcesses) -> None:
    data = photo()
    calls: list[tuple[int, int]] = []
    result = pool.enhance(data, 96, 60_000_000, on_progress=lambda done, total: calls.append((done, total)))
    assert result == enhance_image(data, 96, config=SR)
    assert calls == [(done, TILES + 1) for done in range(TILES + 2)]
    assert result.engine == "sr"


def test_a_cancel_stops_the_child_at_its_next_tile_and_the_child_serves_on(pool: SuperResolutionProcesses) -> None:
    raised = Cancelled("cancel")
    calls: list[int] = []

    def cancel_at_tile_2(done: int, total: int) -> None:
        calls.append(done)
        if done == 2:
            raise raised

    with pytest.raises(Cancelled) as caught:
        pool.enhance(photo(), 96, 60_000_000, on_progress=cancel_at_tile_2)
    assert caught.value is raised
    child = only_child(pool)
    assert calls[:3] == [0, 1, 2] and len(calls) <= 4  # at most the tile in flight when the cancel arrived
    assert pool.enhance(photo(), 96, 60_000_000, on_progress=lambda d, t: None).engine == "sr"
    assert only_child(pool) == child


def test_a_child_that_does_not_stop_within_the_grace_is_killed_and_replaced(pool: SuperResolutionProcesses) -> None:
    frozen: list[int] = []

    def freeze_then_cancel(done: int, total: int) -> None:
        if done == 1:
            frozen.append(only_child(pool))
            os.kill(frozen[0], signal.SIGSTOP)  # stuck in a tile, as a long one on a loaded machine would be
            raise Cancelled

    started = time.monotonic()
    with pytest.raises(Cancelled):
        pool.enhance(LONG, 256, 60_000_000, on_progress=freeze_then_cancel)
    assert time.monotonic() - started < 10
    assert not alive(frozen[0]) and pool.pids() == []
    assert pool.enhance(photo(), 96, 60_000_000, on_progress=lambda d, t: None).engine == "sr"
    assert only_child(pool) != frozen[0]


def test_a_cancel_noticed_while_waiting_reaches_the_child(pool: SuperResolutionProcesses) -> None:
    """The wait callback (a heartbeat's cancel check) runs while the child works on a tile; it may cancel too."""
    frozen: list[int] = []
    cancel = threading.Event()

    def freeze(done: int, total: int) -> None:
        if done == 1:
            frozen.append(only_child(pool))
            os.kill(frozen[0], signal.SIGSTOP)
            cancel.set()

    def check() -> None:
        if cancel.is_set():
            raise Cancelled

    with pytest.raises(Cancelled):
        pool.enhance(LONG, 256, 60_000_000, on_progress=freeze, on_wait=check, wait_interval=0.05)
    assert not alive(frozen[0])


def test_a_child_killed_mid_image_fails_that_image_retryably_and_a_fresh_one_takes_the_next(
    pool: SuperResolutionProcesses,
) -> None:
    killed: list[int] = []

    def kill_at_tile_1(done: int, total: int) -> None:
        if done == 1 and not killed:
            killed.append(only_child(pool))
            os.kill(killed[0], signal.SIGKILL)

    with pytest.raises(EngineProcessError, match="killed by signal 9"):
        pool.enhance(LONG, 256, 60_000_000, on_progress=kill_at_tile_1)
    assert pool.pids() == [] and not alive(killed[0])
    assert pool.enhance(photo(), 96, 60_000_000, on_progress=lambda d, t: None).engine == "sr"
    assert only_child(pool) != killed[0]


def test_a_child_killed_while_idle_is_replaced(pool: SuperResolutionProcesses) -> None:
    pool.start()
    first = only_child(pool)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not alive(first))  # the kernel has ended it (a zombie until the pool reaps it)
    assert pool.enhance(photo(), 96, 60_000_000, on_progress=lambda d, t: None).engine == "sr"
    assert only_child(pool) != first


def test_a_child_that_reports_nothing_for_the_stall_limit_is_killed(pool: SuperResolutionProcesses) -> None:
    frozen: list[int] = []

    def freeze(done: int, total: int) -> None:
        if done == 1:
            frozen.append(only_child(pool))
            os.kill(frozen[0], signal.SIGSTOP)

    with pytest.raises(EngineProcessError, match="reported nothing for 1 s"):
        pool.enhance(LONG, 256, 60_000_000, on_progress=freeze, wait_interval=0.1)
    assert not alive(frozen[0]) and pool.pids() == []


@pytest.mark.parametrize(
    "pool", [ProcessLimits(processes=1, max_images=2), ProcessLimits(processes=1, max_rss_mb=1)], indirect=True
)
def test_children_are_recycled_after_their_images_or_memory(pool: SuperResolutionProcesses) -> None:
    per_child = pool.limits.max_images if pool.limits.max_images < 100 else 1  # 1 MB is exceeded by every image
    ran_in: list[int] = []
    after: list[list[int]] = []

    def note_child(done: int, total: int) -> None:
        if done == 1:
            ran_in.append(only_child(pool))

    for _ in range(2 * per_child):
        pool.enhance(photo(), 96, 60_000_000, on_progress=note_child)
        after.append(pool.pids())
    first, second = set(ran_in[:per_child]), set(ran_in[per_child:])
    assert len(first) == len(second) == 1 and first != second
    assert after[per_child - 1] == [] and not alive(first.pop())  # stopped right after its last image


def test_bad_input_is_an_invalid_image_and_the_child_stays(pool: SuperResolutionProcesses) -> None:
    pool.start()
    child = only_child(pool)
    with pytest.raises(InvalidImageError):
        pool.enhance(b"not an image at all", 96, 60_000_000, on_progress=lambda d, t: None)
    assert only_child(pool) == child


@pytest.mark.parametrize("pool", [ProcessLimits(processes=2)], indirect=True)
def test_images_run_at_once_in_separate_children(pool: SuperResolutionProcesses) -> None:
    """Two threads, two children, both in the middle of an image at the same moment."""
    both_busy = threading.Barrier(2, timeout=60)
    seen: dict[str, set[int]] = {}

    def run(name: str) -> None:
        def progress(done: int, total: int) -> None:
            if done == 1:
                seen[name] = set(pool.pids())
                both_busy.wait()  # both children have reported a tile: each holds its own image

        pool.enhance(photo(), 96, 60_000_000, on_progress=progress)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(pool.pids()) == 2 and set(seen) == {"a", "b"}


def test_a_caller_waiting_for_a_free_child_notices_a_cancel(pool: SuperResolutionProcesses) -> None:
    holding = threading.Event()
    release = threading.Event()

    def hold(done: int, total: int) -> None:
        if done == 1:
            holding.set()
            release.wait(30)

    busy = threading.Thread(target=pool.enhance, args=(photo(), 96, 60_000_000, hold))
    busy.start()
    assert holding.wait(30)
    checks: list[float] = []

    def cancel_on_third_check() -> None:
        checks.append(time.monotonic())
        if len(checks) == 3:
            raise Cancelled

    try:
        with pytest.raises(Cancelled):
            pool.enhance(photo(), 96, 60_000_000, lambda d, t: None, on_wait=cancel_on_third_check, wait_interval=0.05)
    finally:
        release.set()
        busy.join(30)


def test_close_stops_every_child(pool: SuperResolutionProcesses) -> None:
    pool.start()
    child = only_child(pool)
    pool.close()
    assert pool.pids() == [] and not alive(child)
    with pytest.raises(RuntimeError, match="closed"):
        pool.enhance(photo(), 96, 60_000_000, on_progress=lambda d, t: None)
