"""Benchmark of the enhancement engine against the decode+encode floor: `python -m bench.imaging`.

Each (source, tier) cell runs in a fresh child process, so its peak RSS is that of one worker process
running two enhancement threads. Results go to bench/results/imaging.json and imaging.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from bench.photos import photo_like, photo_like_jpeg
from core.vocabulary import TIER_LONG_SIDES
from imaging import EngineConfig, enhance_image

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

SOURCES = {"6MP": (3000, 2000, 1), "1MP": (1200, 800, 2)}  # name: (width, height, seed)
TARGET_SOURCE = "6MP"
TARGETS = {  # for the 6 MP source on 2 cores: (max ratio to floor, min images/s with 2 workers)
    "TIER_1K": (1.5, 25.0),
    "TIER_2K": (1.8, 17.0),
    "TIER_4K": (2.5, 8.0),
}
MAX_RSS_MB = 300.0  # per worker at 4K
WORKERS = 2

# The largest accepted input (MAX_IMAGE_PIXELS, 60 MP) as a PNG, the format Pillow must decode in full
# (a JPEG is DCT-scaled while decoding), and as a JPEG; one enhancement per fresh process at each tier.
LARGE_SIZE = (9480, 6328)  # 59.99 MP, 3:2
LARGE_BOUND_MB = 600.0  # documented in docs/imaging.md: idle + file + 4 B/px decoded + output buffers

# Super-resolution at TIER_4K from a 1000-px photo (4.1x: two 2x passes), on 1 and 2 threads.
SR_SOURCE = (1000, 667, 3)
SR_THREADS = (1, 2)

_FLOOR_JPEG_PARAMS = [
    cv2.IMWRITE_JPEG_QUALITY,
    90,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
]


@dataclass
class Cell:
    """Measurements for one source at one tier, all taken in one child process."""

    source: str
    tier: str
    output: str
    engine_ms: float
    floor_ms: float
    floor_opencv_ms: float
    floor_pillow_ms: float
    ratio: float
    engine_cpu_ms: float
    floor_cpu_ms: float
    cpu_ratio: float
    engine_ips_2_workers: float
    floor_ips_2_workers: float
    peak_rss_mb: float
    idle_rss_mb: float
    naive_pillow_ms: float | None
    cpu_ratio_rounds: list[float] = field(default_factory=list)  # every round's CPU ratio, sorted


@dataclass
class MemoryCell:
    """One enhancement of the 60 MP source in a fresh process: its time and the process's peak RSS."""

    source: str
    tier: str
    output: str
    engine_ms: float
    input_mb: float
    idle_rss_mb: float
    peak_rss_mb: float
    bound_mb: float


@dataclass
class SrCell:
    """One TIER_4K enhancement of the 1000-px source by an engine path, in a fresh process."""

    engine: str
    threads: int
    output: str
    seconds: float
    seconds_per_output_mp: float
    cpu_seconds_per_output_mp: float
    idle_rss_mb: float
    peak_rss_mb: float
    tiles: int


def peak_rss_mb() -> float:
    """Peak resident set of this process (VmHWM); ru_maxrss would include the parent's, inherited at fork."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000.0, 1)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _timed_both(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU of this thread) seconds; CPU time is what other load on the machine does not inflate."""
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def _floor_functions(data: bytes, output_pixels: np.ndarray) -> dict[str, Callable[[], object]]:
    """Decode the source + encode a JPEG q90 of the output size, nothing else, in both libraries."""
    output_image = Image.fromarray(cv2.cvtColor(output_pixels, cv2.COLOR_BGR2RGB))
    buffer = np.frombuffer(data, np.uint8)

    def opencv() -> object:
        cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        return cv2.imencode(".jpg", output_pixels, _FLOOR_JPEG_PARAMS)

    def pillow() -> object:
        Image.open(io.BytesIO(data)).load()
        out = io.BytesIO()
        output_image.save(out, "JPEG", quality=90)
        return out

    return {"opencv": opencv, "pillow": pillow}


def naive_pillow(data: bytes, long_side: int) -> bytes:
    """The straightforward Pillow pipeline, for reference: what the engine is meant to beat."""
    image: Image.Image = Image.open(io.BytesIO(data))
    ImageOps.exif_transpose(image, in_place=True)
    image = image.convert("RGB")
    width, height = image.size
    scale = long_side / max(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.LANCZOS)
    image = ImageOps.autocontrast(image, cutoff=0.5)
    image = ImageEnhance.Color(image).enhance(1.1)
    image = image.filter(ImageFilter.UnsharpMask(radius=1, percent=50, threshold=0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _throughput(fn: Callable[[], object], jobs: int) -> float:
    def job(_: int) -> None:
        fn()  # drop the result at once, as a worker does after storing it

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(job, range(WORKERS)))  # warm both threads
        start = time.perf_counter()
        list(pool.map(job, range(jobs)))
        elapsed = time.perf_counter() - start
    return round(jobs / elapsed, 1)


def measure_cell(source: str, path: Path, tier: str, runs: int, naive_runs: int) -> Cell:
    """2-thread throughput and peak RSS of the engine alone, then interleaved single-thread medians."""
    idle_rss = peak_rss_mb()
    data = path.read_bytes()
    long_side = TIER_LONG_SIDES[tier]

    def engine() -> object:
        return enhance_image(data, long_side)

    # Engine-only phase first, so the peak RSS is that of a worker and not of the floor's buffers.
    single_estimate = _timed(engine)
    jobs = min(120, max(4 * WORKERS, round(4.0 * WORKERS / single_estimate)))
    engine_ips = _throughput(engine, jobs)
    engine_rss = peak_rss_mb()

    output = enhance_image(data, long_side)
    output_pixels = cv2.imdecode(np.frombuffer(output.data, np.uint8), cv2.IMREAD_COLOR)
    assert output_pixels is not None
    floors = _floor_functions(data, output_pixels)
    samples: dict[str, list[float]] = {"engine": [], "opencv": [], "pillow": []}
    cpu: dict[str, list[float]] = {"engine": [], "opencv": [], "pillow": []}
    for fn in floors.values():  # warm-up
        fn()
    for _ in range(runs):  # interleaved, so drift in machine load hits engine and floor alike
        for name, fn in (("engine", engine), *floors.items()):
            wall, thread_cpu = _timed_both(fn)
            samples[name].append(wall)
            cpu[name].append(thread_cpu)
    floor_name = min(floors, key=lambda name: statistics.median(samples[name]))
    engine_ms, floor_ms = _median_ms(samples["engine"]), _median_ms(samples[floor_name])
    engine_cpu_ms, floor_cpu_ms = _median_ms(cpu["engine"]), _median_ms(cpu[floor_name])
    floor_ips = _throughput(floors[floor_name], jobs)
    naive_ms = None
    if naive_runs:
        naive_ms = _median_ms([_timed(lambda: naive_pillow(data, long_side)) for _ in range(naive_runs)])
    return Cell(
        source=source,
        tier=tier,
        output=f"{output.width}x{output.height}",
        engine_ms=engine_ms,
        floor_ms=floor_ms,
        floor_opencv_ms=_median_ms(samples["opencv"]),
        floor_pillow_ms=_median_ms(samples["pillow"]),
        ratio=round(engine_ms / floor_ms, 2),
        engine_cpu_ms=engine_cpu_ms,
        floor_cpu_ms=floor_cpu_ms,
        cpu_ratio=round(engine_cpu_ms / floor_cpu_ms, 2),
        engine_ips_2_workers=engine_ips,
        floor_ips_2_workers=floor_ips,
        peak_rss_mb=engine_rss,
        idle_rss_mb=idle_rss,
        naive_pillow_ms=naive_ms,
    )


def measure_memory(source: str, path: Path, tier: str) -> MemoryCell:
    """One enhancement, single thread, classic path: wall time and the peak RSS of this fresh process."""
    idle = peak_rss_mb()
    data = path.read_bytes()
    start = time.perf_counter()
    output = enhance_image(data, TIER_LONG_SIDES[tier], max_pixels=LARGE_SIZE[0] * LARGE_SIZE[1])
    elapsed = time.perf_counter() - start
    return MemoryCell(
        source=source,
        tier=tier,
        output=f"{output.width}x{output.height}",
        engine_ms=round(elapsed * 1000.0, 1),
        input_mb=round(len(data) / 2**20, 1),
        idle_rss_mb=idle,
        peak_rss_mb=peak_rss_mb(),
        bound_mb=LARGE_BOUND_MB,
    )


def measure_sr(path: Path, engine: str, threads: int) -> SrCell:
    """One TIER_4K enhancement with the given engine path; wall and process CPU time (ncnn runs its own
    threads), per output megapixel, and the peak RSS of this fresh process."""
    idle = peak_rss_mb()
    data = path.read_bytes()
    config = EngineConfig(engine="sr" if engine == "sr" else "classic", sr_threads=threads)
    ticks: list[int] = []
    wall, cpu = time.perf_counter(), time.process_time()
    output = enhance_image(
        data, TIER_LONG_SIDES["TIER_4K"], config=config, on_progress=lambda done, total: ticks.append(total)
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert output.engine == engine, f"expected the {engine} path, got {output.engine}"
    megapixels = output.width * output.height / 1e6
    return SrCell(
        engine=engine,
        threads=threads,
        output=f"{output.width}x{output.height}",
        seconds=round(wall, 2),
        seconds_per_output_mp=round(wall / megapixels, 3),
        cpu_seconds_per_output_mp=round(cpu / megapixels, 3),
        idle_rss_mb=idle,
        peak_rss_mb=peak_rss_mb(),
        tiles=ticks[-1] - 1 if engine == "sr" else 0,
    )


def large_png(path: Path) -> None:
    """A 60 MP photo-like PNG: a quarter-size photo_like enlarged, plus grain so it does not compress away."""
    width, height = LARGE_SIZE
    pixels = cv2.resize(photo_like(width // 4, height // 4, seed=5), LARGE_SIZE, interpolation=cv2.INTER_CUBIC)
    grain = np.asarray(np.random.default_rng(5).integers(0, 6, pixels.shape, dtype=np.uint8))
    pixels = cv2.add(pixels, grain)
    Image.fromarray(pixels).save(path, compress_level=1)
    Image.fromarray(pixels).save(path.with_suffix(".jpg"), quality=90)


def _child_json(args: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.imaging", *args]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def _run_child(source: str, path: Path, tier: str, runs: int, naive_runs: int) -> Cell:
    command = [sys.executable, "-m", "bench.imaging", "--child", source, str(path), tier]
    command += ["--runs", str(runs), "--naive-runs", str(naive_runs)]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
    return Cell(**json.loads(completed.stdout.strip().splitlines()[-1]))


def _verdict(value: float, target: float, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    if met:
        return "met"
    miss = (target - value) / target if higher_is_better else (value - target) / target
    return f"missed by {miss:.0%}"


def _targets(cell: Cell) -> dict[str, str]:
    if cell.source != TARGET_SOURCE:
        return {}
    max_ratio, min_ips = TARGETS[cell.tier]
    verdicts = {
        "CPU ratio to floor": f"{cell.cpu_ratio:g} (target ≤ {max_ratio}; wall-clock {cell.ratio:g}): "
        f"{_verdict(cell.cpu_ratio, max_ratio, False)}",
        "throughput": f"{cell.engine_ips_2_workers:g}/s (target ≥ {min_ips:g}/s): "
        f"{_verdict(cell.engine_ips_2_workers, min_ips, True)}",
    }
    if cell.tier == "TIER_4K":
        verdicts["peak RSS"] = (
            f"{cell.peak_rss_mb:g} MB (target ≤ {MAX_RSS_MB:g} MB): {_verdict(cell.peak_rss_mb, MAX_RSS_MB, False)}"
        )
    return verdicts


def render_markdown(
    cells: list[Cell],
    meta: dict[str, Any],
    memory: list[MemoryCell] | None = None,
    sr_cells: list[SrCell] | None = None,
) -> str:
    """The results table, then each target's verdict, then the 60 MP and super-resolution tables."""
    lines = [
        "# Imaging benchmark",
        "",
        f"`python -m bench.imaging` on {meta['cpu_count']} CPUs, Python {meta['python']}, OpenCV {meta['opencv']}, "
        f"Pillow {meta['pillow']}; load average {meta['load_average_before']:.2f} before, "
        f"{meta['load_average_after']:.2f} after.",
        "",
        f"ms: median of {meta['runs']} single-thread runs, engine and floor interleaved. Floor: decode the source "
        "+ encode a q90 JPEG of the output size, nothing else (the faster of OpenCV and Pillow). CPU ratio: the "
        f"same from thread CPU time, which other load on the machine does not inflate. Images/s: {WORKERS} "
        "threads in one process. Peak RSS: that process, idle RSS included.",
        "",
        "| source | tier | output | engine ms | floor ms | ratio | CPU ratio | images/s | floor images/s "
        "| peak RSS MB | naive Pillow ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        naive = f"{c.naive_pillow_ms:g}" if c.naive_pillow_ms is not None else "–"
        lines.append(
            f"| {c.source} | {c.tier} | {c.output} | {c.engine_ms:g} | {c.floor_ms:g} | {c.ratio:g} | {c.cpu_ratio:g} "
            f"| {c.engine_ips_2_workers:g} | {c.floor_ips_2_workers:g} | {c.peak_rss_mb:g} | {naive} |"
        )
    lines += ["", f"Idle RSS of a child process after imports: {cells[0].idle_rss_mb:g} MB.", ""]
    if any(len(c.cpu_ratio_rounds) > 1 for c in cells):
        lines += [
            f"CPU ratio to the floor over {len(cells[0].cpu_ratio_rounds)} rounds (each a fresh process per cell, "
            "rounds run one after another): min / median / max. The table above shows the median round.",
            "",
            "| source | tier | CPU ratio min / median / max |",
            "|---|---|---:|",
        ]
        for c in cells:
            spread = c.cpu_ratio_rounds
            lines.append(f"| {c.source} | {c.tier} | {spread[0]:g} / {c.cpu_ratio:g} / {spread[-1]:g} |")
        lines.append("")
    lines += [f"Targets ({TARGET_SOURCE} source, {WORKERS} cores):", ""]
    for c in cells:
        for name, verdict in _targets(c).items():
            lines.append(f"- {c.tier} {name}: {verdict}")
    lines.append("")
    if memory:
        lines += [
            f"## The largest accepted input ({LARGE_SIZE[0]}x{LARGE_SIZE[1]}, 60 MP)",
            "",
            "One enhancement per fresh process, one thread. Peak RSS includes the idle process and the input "
            f"file held in memory; the documented bound is {LARGE_BOUND_MB:g} MB.",
            "",
            "| source | tier | output | engine ms | input MB | idle RSS MB | peak RSS MB | within bound |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for m in memory:
            verdict = "yes" if m.peak_rss_mb <= m.bound_mb else "NO"
            lines.append(
                f"| {m.source} | {m.tier} | {m.output} | {m.engine_ms:g} | {m.input_mb:g} | {m.idle_rss_mb:g} "
                f"| {m.peak_rss_mb:g} | {verdict} |"
            )
        lines.append("")
    if sr_cells:
        lines += [
            f"## Super-resolution at TIER_4K ({SR_SOURCE[0]}x{SR_SOURCE[1]} JPEG source)",
            "",
            "One enhancement per fresh process. CPU s: process CPU time (ncnn runs its own threads), per output "
            "megapixel. Threads: SR_THREADS (the classic path is single-threaded).",
            "",
            "| engine | threads | output | seconds | s per output MP | CPU s per output MP | tiles | peak RSS MB |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
        ]
        for sc in sr_cells:
            lines.append(
                f"| {sc.engine} | {sc.threads} | {sc.output} | {sc.seconds:g} | {sc.seconds_per_output_mp:g} "
                f"| {sc.cpu_seconds_per_output_mp:g} | {sc.tiles} | {sc.peak_rss_mb:g} |"
            )
        lines.append("")
    return "\n".join(lines)


def run_large(tmp: Path) -> list[MemoryCell]:
    """The 60 MP rows: PNG and JPEG at every tier, each in a fresh process."""
    path = tmp / "60MP.png"
    large_png(path)
    memory = []
    for source, file in (("60MP PNG", path), ("60MP JPEG", path.with_suffix(".jpg"))):
        for tier in TIER_LONG_SIDES:
            cell = MemoryCell(**_child_json(["--child-memory", source, str(file), tier]))
            print(f"{source} {tier}: {cell.engine_ms} ms, peak {cell.peak_rss_mb} MB", flush=True)
            memory.append(cell)
    return memory


def run_sr(tmp: Path) -> list[SrCell]:
    """Classic and SR at TIER_4K from the 1000-px source, SR on 1 and 2 threads."""
    width, height, seed = SR_SOURCE
    path = tmp / "sr-source.jpg"
    path.write_bytes(photo_like_jpeg(width, height, seed))
    cells = []
    for engine, threads in (("classic", 1), *(("sr", t) for t in SR_THREADS)):
        cell = SrCell(**_child_json(["--child-sr", str(path), engine, str(threads)]))
        print(f"{engine} x{threads}: {cell.seconds} s, {cell.seconds_per_output_mp} s/MP, {cell.peak_rss_mb} MB")
        cells.append(cell)
    return cells


def _median_round(found: list[Cell]) -> Cell:
    """The round with the median CPU ratio, with the spread of every round's CPU ratio attached."""
    ordered = sorted(found, key=lambda c: c.cpu_ratio)
    cell = ordered[len(ordered) // 2]
    cell.cpu_ratio_rounds = [c.cpu_ratio for c in ordered]
    if cell.naive_pillow_ms is None:
        cell.naive_pillow_ms = next((c.naive_pillow_ms for c in found if c.naive_pillow_ms is not None), None)
    return cell


def run(
    runs: int, naive_runs: int, out_dir: Path, large: bool = True, super_resolution: bool = True, rounds: int = 1
) -> list[Cell]:
    """Generate the sources, measure every cell in its own process, print and write the results."""
    cells: list[Cell] = []
    memory: list[MemoryCell] = []
    sr_cells: list[SrCell] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rounds_of: dict[tuple[str, str], list[Cell]] = {}
        for round_number in range(rounds):  # whole rounds, so drift in machine load hits every cell alike
            for source, (width, height, seed) in SOURCES.items():
                path = Path(tmp) / f"{source}.jpg"
                path.write_bytes(photo_like_jpeg(width, height, seed))
                for tier in TIER_LONG_SIDES:
                    cell = _run_child(source, path, tier, runs, naive_runs if round_number == 0 else 0)
                    print(
                        f"round {round_number + 1}: {source} {tier}: {cell.engine_ms} ms (floor {cell.floor_ms}, "
                        f"x{cell.ratio}, CPU x{cell.cpu_ratio}), {cell.engine_ips_2_workers}/s, {cell.peak_rss_mb} MB",
                        flush=True,
                    )
                    rounds_of.setdefault((source, tier), []).append(cell)
        cells = [_median_round(found) for found in rounds_of.values()]
        if large:
            memory = run_large(Path(tmp))
        if super_resolution:
            sr_cells = run_sr(Path(tmp))
    meta = {
        "cpu_count": len(os.sched_getaffinity(0)),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
        "runs": runs,
        "workers": WORKERS,
    }
    markdown = render_markdown(cells, meta, memory, sr_cells)
    print()
    print(markdown)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "cells": [asdict(c) | {"targets": _targets(c)} for c in cells],
        "large": [asdict(m) for m in memory],
        "super_resolution": [asdict(c) for c in sr_cells],
    }
    (out_dir / "imaging.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / "imaging.md").write_text(markdown)
    return cells


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.imaging", description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="single-thread timing runs per cell")
    parser.add_argument("--naive-runs", type=int, default=3, help="runs of the naive Pillow reference (0: skip)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for imaging.json and .md")
    parser.add_argument("--skip-large", action="store_true", help="skip the 60 MP rows")
    parser.add_argument("--skip-sr", action="store_true", help="skip the super-resolution rows (~2 minutes)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat every cell this many times (min/median/max)")
    parser.add_argument("--child", nargs=3, metavar=("SOURCE", "PATH", "TIER"), help=argparse.SUPPRESS)
    parser.add_argument("--child-memory", nargs=3, metavar=("SOURCE", "PATH", "TIER"), help=argparse.SUPPRESS)
    parser.add_argument("--child-sr", nargs=3, metavar=("PATH", "ENGINE", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        source, path, tier = args.child_memory
        print(json.dumps(asdict(measure_memory(source, Path(path), tier))))
        return
    if args.child_sr:
        path, engine, threads = args.child_sr
        print(json.dumps(asdict(measure_sr(Path(path), engine, int(threads)))))
        return
    if args.child:
        source, path, tier = args.child
        cell = measure_cell(source, Path(path), tier, args.runs, args.naive_runs)
        print(json.dumps(asdict(cell)))
        return
    run(args.runs, args.naive_runs, args.out, not args.skip_large, not args.skip_sr, args.rounds)


if __name__ == "__main__":
    main()
