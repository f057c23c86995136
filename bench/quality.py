"""Full-reference quality benchmark of the engine: `python -m bench.quality`.

Each photo of the committed set (tests/fixtures/photos, public domain / CC0) is converted to sRGB and
cropped to a multiple of 4 pixels, then shrunk 2x and 4x (area and Lanczos) and enlarged back to its own
size by the engine (auto: super-resolution; and classic), bicubic and Lanczos, all in the same run.
Every method's output is delivered the same way (JPEG q90, the engine's chroma choice), so the figures
compare enlargement and finish, not encoders. PSNR (RGB) and SSIM (luma) are against the original.

At the photo's own size it measures what the finish does to a photo that needs nothing, next to what
JPEG alone does: newly clipped pixels, halo overshoot at edges, grain in flat and dark areas, and chroma
loss at colour detail. Results go to bench/results/quality.json and quality.md; side-by-side crops to
docs/images/.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from bench.imaging import peak_rss_mb
from imaging import EngineConfig, _pixels, enhance_image, finish
from imaging.colour import convert_image_to_srgb, source_profile

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PHOTOS_DIR = PROJECT_ROOT / "tests" / "fixtures" / "photos"
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
CROPS_DIR = PROJECT_ROOT / "docs" / "images"
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "logo.png",
    "retina.jpg",
    "rocket.jpg",
)
FACTORS = (2, 4)
SHRINKS = ("area", "lanczos")
METHODS = ("engine", "classic", "bicubic", "lanczos")
ENGINE_CONFIG = EngineConfig(engine="sr")
CLASSIC_CONFIG = EngineConfig(engine="classic")

# Done-when targets (issue 9).
TARGET_GAIN_DB = {2: 1.5, 4: 1.2}
MAX_LOSS_DB = 0.5
BOTH_GOOD_DB = 40.0
MAX_NEW_CLIPPING = 0.5  # % of pixels
MAX_EXTRA_HALO = 2.0  # percentage points over JPEG alone

_HALO_LEVELS = 10
_CLIP_MARGIN = 8
_LUMA = np.array([0.299, 0.587, 0.114])
_CROP = 160  # side of each crop, in pixels of the original
CROP_PHOTOS = {"astronaut.png": (0.30, 0.20), "hubble_deep_field.jpg": (0.45, 0.40), "rocket.jpg": (0.45, 0.35)}


@dataclass
class Enlargement:
    photo: str
    factor: int
    shrink: str
    psnr: dict[str, float]
    ssim: dict[str, float]
    halo_pct: dict[str, float]


@dataclass
class OwnSize:
    photo: str
    size: str
    new_clipping_pct: float
    jpeg_new_clipping_pct: float
    halo_pct: float
    jpeg_halo_pct: float
    grain_ratio: float
    jpeg_grain_ratio: float
    chroma_loss: float
    jpeg_chroma_loss: float
    full_chroma: bool


@dataclass
class Speed:
    method: str
    output_mp: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    calls: int = 0
    idle_rss_mb: float = 0.0


def load_srgb(path: Path) -> np.ndarray:
    """RGB uint8 pixels in sRGB (embedded profiles converted), alpha dropped, cropped to a multiple of 4."""
    with Image.open(path) as image:
        image.load()
        icc = source_profile(image.info)
        rgb = image.convert("RGB")
        converted = convert_image_to_srgb(rgb, icc)
        pixels = np.asarray(converted if converted is not None else rgb)
    height, width = pixels.shape[:2]
    return np.ascontiguousarray(pixels[: height - height % 4, : width - width % 4])


def png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG", compress_level=1)
    return out.getvalue()


def decode_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def deliver(rgb: np.ndarray) -> np.ndarray:
    """What a plain service would deliver for these pixels: the engine's JPEG encoding, decoded back."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    return decode_rgb(_pixels.encode_jpeg(bgr, finish.wants_full_chroma(bgr)))


def jpeg_only(rgb: np.ndarray) -> np.ndarray:
    """The original through a plain q90 4:2:0 JPEG: the reference for what encoding alone costs."""
    return decode_rgb(_pixels.encode_jpeg(np.ascontiguousarray(rgb[..., ::-1]), False))


def shrink(rgb: np.ndarray, factor: int, how: str) -> np.ndarray:
    height, width = rgb.shape[:2]
    size = (width // factor, height // factor)
    if how == "area":
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def luma(rgb: np.ndarray) -> np.ndarray:
    weighted: np.ndarray = rgb.astype(np.float64) @ _LUMA
    return weighted


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of the luma planes (Gaussian window, sigma 1.5, as in Wang et al. 2004)."""
    x, y = luma(a), luma(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(v: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(v, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


def new_clipping_pct(original: np.ndarray, output: np.ndarray) -> float:
    """% of pixels with a channel at 0 or 255 that was more than 8 levels away from it in the original.

    (Rounding a 253 to 255 is not clipping: JPEG does that to saturated colours on its own.)"""
    away = (original > _CLIP_MARGIN) & (original < 255 - _CLIP_MARGIN)
    return 100.0 * float((((output == 0) | (output == 255)) & away).any(axis=2).mean())


def halo_pct(original: np.ndarray, output: np.ndarray) -> float:
    """% of edge pixels whose luma leaves the original's 3x3 range by more than 10 levels."""
    y_orig, y_out = luma(original).astype(np.float32), luma(output).astype(np.float32)
    edges = cv2.dilate(cv2.Canny(y_orig.astype(np.uint8), 50, 150), np.ones((3, 3), np.uint8)) > 0
    kernel = np.ones((3, 3), np.uint8)
    high, low = cv2.dilate(y_orig, kernel), cv2.erode(y_orig, kernel)
    over = (y_out > high + _HALO_LEVELS) | (y_out < low - _HALO_LEVELS)
    return 100.0 * float(over[edges].mean()) if edges.any() else 0.0


def grain_ratio(original: np.ndarray, output: np.ndarray) -> float:
    """Laplacian variance of the output over the original's, in flat or dark areas (1.0 = unchanged)."""
    y_orig, y_out = luma(original).astype(np.float32), luma(output).astype(np.float32)
    mean = cv2.blur(y_orig, (7, 7))
    local_std = np.sqrt(np.maximum(cv2.blur(y_orig * y_orig, (7, 7)) - mean * mean, 0))
    quiet = (local_std <= np.percentile(local_std, 25)) | (mean < 40)
    lap_orig, lap_out = cv2.Laplacian(y_orig, cv2.CV_32F), cv2.Laplacian(y_out, cv2.CV_32F)
    # A floor of 1 level^2 keeps perfectly flat areas (a logo's background) from dividing by ~0.
    return (float(lap_out[quiet].var()) + 1.0) / (float(lap_orig[quiet].var()) + 1.0)


def chroma_loss(original: np.ndarray, output: np.ndarray) -> float:
    """Mean CbCr error (levels) on the 1 % of pixels with the most colour detail in the original."""
    c_orig = cv2.cvtColor(original, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float32)
    c_out = cv2.cvtColor(output, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float32)
    detail = np.abs(c_orig - cv2.GaussianBlur(c_orig, (0, 0), 1.0)).sum(axis=2)
    top = detail >= np.percentile(detail, 99)
    return float(np.sqrt(((c_orig - c_out) ** 2).sum(axis=2))[top].mean())


@dataclass(frozen=True)
class Job:
    """One enlargement: a shrunk photo and the size to bring it back to."""

    photo: str
    factor: int
    shrink: str
    small: np.ndarray
    size: tuple[int, int]


def enlarge(method: str, small: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    if method in ("engine", "classic"):
        config = ENGINE_CONFIG if method == "engine" else CLASSIC_CONFIG
        return decode_rgb(enhance_image(png(small), max(width, height), config=config).data)
    interpolation = cv2.INTER_CUBIC if method == "bicubic" else cv2.INTER_LANCZOS4
    return deliver(cv2.resize(small, size, interpolation=interpolation))


def run_method(method: str, jobs: list[Job]) -> tuple[list[np.ndarray], Speed]:
    """Every enlargement by one method, timed (wall and process CPU: SR runs native threads), with the
    process's peak RSS; called in a fresh process per method so each peak is that method's own."""
    speed = Speed(method, idle_rss_mb=peak_rss_mb())
    outputs = []
    for job in jobs:
        wall, cpu = time.perf_counter(), time.process_time()
        outputs.append(enlarge(method, job.small, job.size))
        speed.wall_s += time.perf_counter() - wall
        speed.cpu_s += time.process_time() - cpu
        speed.output_mp += job.size[0] * job.size[1] / 1e6
        speed.calls += 1
    speed.peak_rss_mb = peak_rss_mb()
    return outputs, speed


def run_method_in_child(method: str, jobs: list[Job]) -> tuple[list[np.ndarray], Speed]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_method, method, jobs).result()


def own_size(name: str, original: np.ndarray) -> OwnSize:
    height, width = original.shape[:2]
    result = enhance_image(png(original), max(width, height), config=CLASSIC_CONFIG)
    output, reference = decode_rgb(result.data), jpeg_only(original)
    return OwnSize(
        photo=name,
        size=f"{width}x{height}",
        new_clipping_pct=round(new_clipping_pct(original, output), 3),
        jpeg_new_clipping_pct=round(new_clipping_pct(original, reference), 3),
        halo_pct=round(halo_pct(original, output), 2),
        jpeg_halo_pct=round(halo_pct(original, reference), 2),
        grain_ratio=round(grain_ratio(original, output), 2),
        jpeg_grain_ratio=round(grain_ratio(original, reference), 2),
        chroma_loss=round(chroma_loss(original, output), 2),
        jpeg_chroma_loss=round(chroma_loss(original, reference), 2),
        full_chroma=finish.wants_full_chroma(np.ascontiguousarray(output[..., ::-1])),
    )


def save_crop(name: str, original: np.ndarray, outputs: dict[str, np.ndarray], out_dir: Path) -> Path:
    """original | bicubic | engine, 160 px each from the 4x area-shrunk test, labelled, as PNG."""
    height, width = original.shape[:2]
    fx, fy = CROP_PHOTOS[name]
    x, y = int(fx * (width - _CROP)), int(fy * (height - _CROP))
    panels = []
    for label, pixels in (("original", original), ("bicubic", outputs["bicubic"]), ("engine", outputs["engine"])):
        panel = np.ascontiguousarray(pixels[y : y + _CROP, x : x + _CROP])
        cv2.putText(panel, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(panel, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(panel)
        panels.append(np.full((_CROP, 4, 3), 255, np.uint8))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"quality-{Path(name).stem}.png"
    Image.fromarray(np.hstack(panels[:-1])).save(path, optimize=True)
    return path


def measure(
    photos: dict[str, np.ndarray], factors: tuple[int, ...], crops_dir: Path | None, in_child: bool = True
) -> tuple[list[Enlargement], list[OwnSize], list[Speed]]:
    """Every method on every shrunk photo (each method in its own process unless in_child is False)."""
    jobs = [
        Job(name, factor, how, shrink(original, factor, how), (original.shape[1], original.shape[0]))
        for name, original in photos.items()
        for factor in factors
        for how in SHRINKS
    ]
    results: dict[str, list[np.ndarray]] = {}
    speeds = []
    for method in METHODS:
        results[method], speed = (run_method_in_child if in_child else run_method)(method, jobs)
        speeds.append(speed)
        print(f"{method}: {speed.wall_s / speed.output_mp:.3f} s per output MP, {speed.peak_rss_mb} MB", flush=True)
    rows: list[Enlargement] = []
    for index, job in enumerate(jobs):
        original = photos[job.photo]
        outputs = {m: results[m][index] for m in METHODS}
        rows.append(
            Enlargement(
                photo=job.photo,
                factor=job.factor,
                shrink=job.shrink,
                psnr={m: round(psnr(original, o), 3) for m, o in outputs.items()},
                ssim={m: round(ssim(original, o), 4) for m, o in outputs.items()},
                halo_pct={m: round(halo_pct(original, o), 2) for m, o in outputs.items()},
            )
        )
        if crops_dir is not None and job.factor == 4 and job.shrink == "area" and job.photo in CROP_PHOTOS:
            save_crop(job.photo, original, outputs, crops_dir)
    own = [own_size(name, original) for name, original in photos.items()]
    return rows, own, speeds


def summarise(rows: list[Enlargement], own: list[OwnSize]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for factor in sorted({r.factor for r in rows}):
        subset = [r for r in rows if r.factor == factor]
        gains = {m: statistics.mean(r.psnr[m] - r.psnr["bicubic"] for r in subset) for m in METHODS}
        worst = min(subset, key=lambda r: r.psnr["engine"] - r.psnr["bicubic"])
        losers = [
            f"{r.photo} {r.shrink}"
            for r in subset
            if r.psnr["engine"] < r.psnr["bicubic"] - MAX_LOSS_DB
            and not (r.psnr["engine"] > BOTH_GOOD_DB and r.psnr["bicubic"] > BOTH_GOOD_DB)
        ]
        summary[f"{factor}x"] = {
            "mean_psnr": {m: round(statistics.mean(r.psnr[m] for r in subset), 3) for m in METHODS},
            "mean_ssim": {m: round(statistics.mean(r.ssim[m] for r in subset), 4) for m in METHODS},
            "mean_halo_pct": {m: round(statistics.mean(r.halo_pct[m] for r in subset), 2) for m in METHODS},
            "mean_gain_over_bicubic_db": {m: round(g, 3) for m, g in gains.items()},
            "worst_engine_gain_db": round(worst.psnr["engine"] - worst.psnr["bicubic"], 3),
            "worst_case": f"{worst.photo} {worst.shrink}",
            "photos_worse_than_bicubic_by_more_than_0.5_db": losers,
            "target_gain_db": TARGET_GAIN_DB.get(factor),
        }
    summary["own_size"] = {
        "max_new_clipping_pct": max(o.new_clipping_pct for o in own),
        "max_halo_over_jpeg_points": round(max(o.halo_pct - o.jpeg_halo_pct for o in own), 2),
        "max_grain_ratio": max(o.grain_ratio for o in own),
    }
    return summary


def _verdicts(summary: dict[str, Any]) -> list[str]:
    lines = []
    for key, target in (("2x", TARGET_GAIN_DB[2]), ("4x", TARGET_GAIN_DB[4])):
        if key not in summary:
            continue
        gain = summary[key]["mean_gain_over_bicubic_db"]["engine"]
        losers = summary[key]["photos_worse_than_bicubic_by_more_than_0.5_db"]
        lines.append(f"- {key}: mean gain {gain:+.2f} dB (target ≥ +{target}): {'met' if gain >= target else 'missed'}")
        lines.append(
            f"- {key}: photos worse than bicubic by > {MAX_LOSS_DB} dB: {', '.join(losers) if losers else 'none'}"
        )
    own = summary["own_size"]
    lines.append(
        f"- own size: new clipping ≤ {MAX_NEW_CLIPPING} % on every photo: "
        f"{'met' if own['max_new_clipping_pct'] <= MAX_NEW_CLIPPING else 'missed'} "
        f"(max {own['max_new_clipping_pct']} %)"
    )
    lines.append(
        f"- own size: halo ≤ JPEG alone + {MAX_EXTRA_HALO:g} points on every photo: "
        f"{'met' if own['max_halo_over_jpeg_points'] <= MAX_EXTRA_HALO else 'missed'} "
        f"(max {own['max_halo_over_jpeg_points']:+} points)"
    )
    return lines


def render_markdown(
    rows: list[Enlargement], own: list[OwnSize], speeds: list[Speed], summary: dict[str, Any], meta: dict[str, Any]
) -> str:
    lines = [
        "# Quality benchmark",
        "",
        f"`python -m bench.quality` on {meta['cpu_count']} CPUs, Python {meta['python']}, OpenCV {meta['opencv']}; "
        f"engine = {meta['engine']}; load average {meta['load_average_before']:.2f} before, "
        f"{meta['load_average_after']:.2f} after.",
        "",
        "Each photo shrunk by the factor (area or Lanczos), enlarged back to its own size, compared with the "
        "original. engine: super-resolution + finish; classic: the engine without the network (bicubic + "
        "guarded sharpening); bicubic / lanczos: OpenCV. Every output is delivered as the engine delivers "
        "(JPEG q90, same chroma choice). PSNR in dB over RGB, SSIM on luma; halo as defined under Own size.",
        "",
        "## Targets",
        "",
        *_verdicts(summary),
        "",
        "## Means",
        "",
        "| factor | "
        + " | ".join(f"{m} PSNR" for m in METHODS)
        + " | "
        + " | ".join(f"{m} SSIM" for m in METHODS)
        + " | engine gain | classic gain | lanczos gain | worst engine gain | halo % "
        + " / ".join(METHODS)
        + " |",
        "|---|" + "---:|" * (2 * len(METHODS) + 5),
    ]
    for key in (k for k in summary if k.endswith("x")):
        s = summary[key]
        halos = " / ".join(f"{s['mean_halo_pct'][m]:g}" for m in METHODS)
        lines.append(
            f"| {key} | "
            + " | ".join(f"{s['mean_psnr'][m]:.2f}" for m in METHODS)
            + " | "
            + " | ".join(f"{s['mean_ssim'][m]:.4f}" for m in METHODS)
            + " | "
            + " | ".join(f"{s['mean_gain_over_bicubic_db'][m]:+.2f}" for m in ("engine", "classic", "lanczos"))
            + f" | {s['worst_engine_gain_db']:+.2f} ({s['worst_case']}) | {halos} |"
        )
    lines += [
        "",
        "## Per photo (PSNR dB / SSIM)",
        "",
        "| photo | factor | shrink | " + " | ".join(METHODS) + " | engine − bicubic |",
        "|---|---|---|" + "---:|" * (len(METHODS) + 1),
    ]
    for r in rows:
        cells = " | ".join(f"{r.psnr[m]:.2f} / {r.ssim[m]:.3f}" for m in METHODS)
        lines.append(
            f"| {r.photo} | {r.factor}x | {r.shrink} | {cells} | {r.psnr['engine'] - r.psnr['bicubic']:+.2f} |"
        )
    lines += [
        "",
        "## Own size: what the finish does to a photo that needs nothing",
        "",
        "Engine at the photo's own size (no resize) next to the original through JPEG q90 4:2:0 alone. New "
        f"clipping: % of pixels with a channel at 0 or 255 that was more than {_CLIP_MARGIN} levels away from it. "
        "Halo: % of edge pixels (Canny, dilated) "
        f"whose luma leaves the original's 3x3 range by > {_HALO_LEVELS} levels. Grain: Laplacian variance "
        "over the original's in flat or dark areas (1.0 = unchanged). Chroma loss: mean CbCr error at the 1 % "
        "of pixels with the most colour detail.",
        "",
        "| photo | size | new clipping % (JPEG) | halo % (JPEG) | grain × (JPEG) | chroma loss (JPEG 4:2:0) | 4:4:4 |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for o in own:
        lines.append(
            f"| {o.photo} | {o.size} | {o.new_clipping_pct:g} ({o.jpeg_new_clipping_pct:g}) | {o.halo_pct:g} "
            f"({o.jpeg_halo_pct:g}) | {o.grain_ratio:g} ({o.jpeg_grain_ratio:g}) | {o.chroma_loss:g} "
            f"({o.jpeg_chroma_loss:g}) | {'yes' if o.full_chroma else 'no'} |"
        )
    lines += [
        "",
        "## Speed and memory",
        "",
        "Over every enlargement above, one thread of work per call (SR_THREADS=1), each method in a fresh "
        "process: peak RSS is that process's (idle after imports in brackets).",
        "",
        "| method | calls | output MP | wall s per output MP | CPU s per output MP | peak RSS MB (idle) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in speeds:
        if s.calls:
            lines.append(
                f"| {s.method} | {s.calls} | {s.output_mp:.1f} | {s.wall_s / s.output_mp:.3f} | "
                f"{s.cpu_s / s.output_mp:.3f} | {s.peak_rss_mb:g} ({s.idle_rss_mb:g}) |"
            )
    lines.append("")
    return "\n".join(lines)


def run(names: tuple[str, ...], factors: tuple[int, ...], out_dir: Path, crops_dir: Path | None) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    photos = {name: load_srgb(PHOTOS_DIR / name) for name in names}
    rows, own, speeds = measure(photos, factors, crops_dir)
    summary = summarise(rows, own)
    meta = {
        "cpu_count": len(os.sched_getaffinity(0)),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "engine": f"{ENGINE_CONFIG.sr_model} (noise {ENGINE_CONFIG.sr_noise}, tile {ENGINE_CONFIG.sr_tile_size})",
    }
    markdown = render_markdown(rows, own, speeds, summary, meta)
    print()
    print(markdown)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "summary": summary,
        "enlargements": [asdict(r) for r in rows],
        "own_size": [asdict(o) for o in own],
        "speed": [asdict(s) for s in speeds],
    }
    (out_dir / "quality.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / "quality.md").write_text(markdown)
    return payload


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=PHOTOS, help="subset of the photo set")
    parser.add_argument("--factors", nargs="+", type=int, default=list(FACTORS), choices=FACTORS)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for quality.json and .md")
    parser.add_argument("--no-crops", action="store_true", help="do not write docs/images/quality-*.png")
    args = parser.parse_args(argv)
    run(tuple(args.photos), tuple(args.factors), args.out, None if args.no_crops else CROPS_DIR)


if __name__ == "__main__":
    main()
