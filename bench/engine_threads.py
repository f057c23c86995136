"""How long the engine keeps a worker's other threads waiting: `python -m bench.engine_threads`.

A worker's heartbeats, its event loop and (in direct mode) the API are Python threads of the process that runs
the images. Here a "heartbeat" thread asks to wake every 50 ms while the engine works, and its lateness (how long
after the due time it actually ran) is recorded, for:

- nothing running (the machine's own noise);
- the classic engine on 2 threads (6 MP JPEGs to TIER_2K, what a worker's IMAGE_WORKERS threads do);
- super-resolution on a thread of the same process (the network's native call holds Python's lock per tile);
- super-resolution in a child process (imaging.processes), this thread only waiting on its socket.

The classic engine's throughput on 1 and 2 threads is measured too: it scales only if its work releases the lock.
And one SR image (a 1000-px photo to TIER_2K) in a child process with SR_THREADS 1 and 2: its wall time and the
child's CPU time, whose ratio says how many cores the runtime's threads really use.
Scenarios are interleaved round by round. Writes bench/results/engine_threads.json and engine_threads.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.photos import photo_like_jpeg
from bench.sr_batch import cpu_seconds, thousand_px_photos
from imaging import EngineConfig, ProcessLimits, SuperResolutionProcesses, enhance_image

RESULTS = Path(__file__).resolve().parent / "results"
TICK = 0.05
SR = EngineConfig(engine="sr")
SCENARIOS = ("idle", "classic, 2 threads", "SR on a thread", "SR in a child process")


def lateness_while(work: Callable[[threading.Event], None], seconds: float) -> list[float]:
    """Milliseconds each 50 ms tick of a thread ran late while `work` ran (it stops when the event is set)."""
    stop = threading.Event()
    late: list[float] = []

    def ticker() -> None:
        due = time.perf_counter() + TICK
        while not stop.is_set():
            time.sleep(max(0.0, due - time.perf_counter()))
            late.append((time.perf_counter() - due) * 1000)
            due = max(due + TICK, time.perf_counter())

    worker = threading.Thread(target=work, args=(stop,))
    tick = threading.Thread(target=ticker)
    worker.start()
    tick.start()
    time.sleep(seconds)
    stop.set()
    worker.join()
    tick.join()
    return late


def classic_threads(photos: list[bytes], threads: int) -> Callable[[threading.Event], None]:
    def work(stop: threading.Event) -> None:
        def loop(n: int) -> None:
            while not stop.is_set():
                enhance_image(photos[n % len(photos)], 2048)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(loop, range(threads)))

    return work


def sr_on_thread(photo: bytes) -> Callable[[threading.Event], None]:
    def work(stop: threading.Event) -> None:
        def check(done: int, total: int) -> None:
            if stop.is_set():
                raise InterruptedError

        while not stop.is_set():
            try:
                enhance_image(photo, 2048, config=SR, on_progress=check)
            except InterruptedError:
                return

    return work


def sr_in_child(pool: SuperResolutionProcesses, photo: bytes) -> Callable[[threading.Event], None]:
    def work(stop: threading.Event) -> None:
        def check(done: int = 0, total: int = 0) -> None:
            if stop.is_set():
                raise InterruptedError

        while not stop.is_set():
            try:
                pool.enhance(photo, 2048, 60_000_000, on_progress=check, on_wait=check, wait_interval=0.5)
            except InterruptedError:
                return

    return work


def classic_rate(photos: list[bytes], threads: int, count: int) -> float:
    """Images per second of the classic engine on `threads` threads (6 MP to TIER_2K)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda data: enhance_image(data, 2048), [photos[n % len(photos)] for n in range(count)]))
    return count / (time.perf_counter() - started)


def sr_image_cores(photo: bytes, threads: int) -> dict[str, float]:
    """Wall and CPU seconds of one SR image (1000 px to TIER_2K) in a child process with `threads` ncnn threads."""
    pool = SuperResolutionProcesses(EngineConfig(engine="sr", sr_threads=threads), ProcessLimits(processes=1))
    pool.start()
    try:
        (pid,) = pool.pids()
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        pool.enhance(photo, 2048, 60_000_000, on_progress=lambda done, total: None)
        wall = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
    finally:
        pool.close()
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cores": round(cpu / wall, 2)}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "max": round(ordered[-1], 1),
    }


def spread(values: list[float], digits: int = 1) -> str:
    return f"{round(statistics.median(values), digits)} ({round(min(values), digits)}–{round(max(values), digits)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_threads", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per scenario and round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    photos = [photo_like_jpeg(3000, 2000, seed=seed) for seed in (1, 2)]
    small = thousand_px_photos(1)[0]
    pool = SuperResolutionProcesses(SR, ProcessLimits(processes=1))
    pool.start()
    work = {
        "idle": lambda stop: stop.wait(),
        "classic, 2 threads": classic_threads(photos, 2),
        "SR on a thread": sr_on_thread(small),
        "SR in a child process": sr_in_child(pool, small),
    }
    late: dict[str, list[dict[str, float]]] = {name: [] for name in SCENARIOS}
    rates: dict[str, list[float]] = {"1 thread": [], "2 threads": []}
    sr_threads: dict[str, list[dict[str, float]]] = {"1": [], "2": []}
    try:
        for round_number in range(args.rounds):
            shift = round_number % len(SCENARIOS)
            for name in SCENARIOS[shift:] + SCENARIOS[:shift]:
                late[name].append(summary(lateness_while(work[name], args.seconds)))
                print(f"round {round_number + 1} {name}: late ms {late[name][-1]}", flush=True)
            for threads in (1, 2) if round_number % 2 == 0 else (2, 1):
                rates[f"{threads} thread{'s' if threads > 1 else ''}"].append(classic_rate(photos, threads, 12))
            print(f"round {round_number + 1} classic images/s: {rates}", flush=True)
            for threads in (1, 2) if round_number % 2 == 0 else (2, 1):
                sr_threads[str(threads)].append(sr_image_cores(small, threads))
            print(f"round {round_number + 1} SR image by SR_THREADS: {sr_threads}", flush=True)
    finally:
        pool.close()
    result: dict[str, Any] = {
        "meta": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        },
        "lateness_ms": late,
        "classic_images_per_second": rates,
        "sr_image_by_sr_threads": sr_threads,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine_threads.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# How long the engine keeps a worker's other threads waiting",
        "",
        f"`python -m bench.engine_threads`, {args.rounds} rounds of {args.seconds:g} s per scenario, interleaved; "
        f"{os.cpu_count()} cores shared with other work (load average {load_before:.1f} before, "
        f"{result['meta']['load_after']:.1f} after). A thread asks to wake every 50 ms; its lateness in ms, "
        "median (min–max) over the rounds:",
        "",
        "| while | p50 | p99 | max |",
        "|---|---:|---:|---:|",
    ]
    for name in SCENARIOS:
        cells = [spread([r[key] for r in late[name]]) for key in ("p50", "p99", "max")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    one, two = rates["1 thread"], rates["2 threads"]
    lines += [
        "",
        f"Classic engine, 6 MP JPEG to TIER_2K: {spread(one, 2)} images/s on 1 thread, {spread(two, 2)} on 2 "
        f"(× {spread([b / a for a, b in zip(one, two, strict=True)], 2)}).",
        "",
        "One SR image (1000-px photo to TIER_2K) in a child process, by SR_THREADS: wall s, the child's CPU s, "
        "and their ratio (the cores its threads kept busy):",
        "",
        "| SR_THREADS | wall s | CPU s | cores |",
        "|---:|---:|---:|---:|",
    ]
    for setting, runs in sr_threads.items():
        cells = [spread([r[key] for r in runs], 2) for key in ("wall_s", "cpu_s", "cores")]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    lines.append("")
    (args.out / "engine_threads.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
