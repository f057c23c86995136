"""Full-reference quality benchmark of the engine: `python -m bench.quality`.

On the licensed photo set of bench.photoset (42 photos in 8 categories, a TRAINING and a REPORT subset):

- Enlargement: each photo (a working copy, long side PHOTO_LONG_SIDE, area-reduced from the original and
  converted to sRGB) is shrunk 2x and 4x (area and Lanczos), given to the engine as a PNG, enlarged back to
  its own size and compared with the original. Methods: `engine` (this tree, super-resolution as the worker
  configures it), `baseline` (the engine of BASELINE_REV, extracted from git and run in a child process),
  `network` (the raw network, no finish), bicubic and Lanczos. Every method's output is delivered the same
  way (JPEG q90, the engine's chroma choice), so the comparison is of enlargement and finish, not encoders.
- Degraded sources: the 2x area-shrunk copy saved as JPEG q50 and q75, and with sensor-like noise (PNG),
  enlarged 2x by engine, baseline and bicubic, scored against the clean original.
- Own size: the working copy at its own size (classic path): mean luma and saturation shift, new clipping
  next to JPEG alone.
- Downscale: each original file (as shipped) at TIER_1K and TIER_2K where it is larger: high-frequency energy
  against a Pillow Lanczos downscale of the same photo, and overshoot at edges against Lanczos's.

Network outputs are cached on disk (bench.srcache), so a second run that changes only the finish takes
minutes. Results: bench/results/quality.json and quality.md; side-by-side crops in docs/images/.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from bench import engine_child, photoset, srcache
from core.vocabulary import TIER_LONG_SIDES
from imaging import EngineConfig, _pixels, finish, restoration, sr
from imaging.colour import convert_image_to_srgb, source_profile

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
CROPS_DIR = PROJECT_ROOT / "docs" / "images"
BASELINE_REV = "925275b"  # the engine before issue 15: levels/saturation finish, no restoration
PHOTO_LONG_SIDE = 768
FACTORS = (2, 4)
SHRINKS = ("area", "lanczos")
DEGRADATIONS = ("q50", "q75", "noise")
DOWNSCALE_TIERS = ("TIER_1K", "TIER_2K")
METHODS = ("engine", "baseline", "network", "bicubic", "lanczos")
DEGRADED_METHODS = ("engine", "baseline", "bicubic")

# Done-when targets (issue 15).
TARGET_GAIN_DB = {2: 1.0, 4: 0.9}
MAX_LOSS_DB = 0.3  # no photo below bicubic by more
MAX_LUMA_SHIFT = 1.5  # levels, at own size
MAX_EXTRA_CLIPPING = 0.1  # % of pixels over JPEG alone
MIN_HF_RATIO = 0.9  # of a Lanczos downscale's high-frequency energy
TARGET_DEGRADED_GAIN_DB = 0.5  # over the baseline, 2x, JPEG sources
MAX_CLEAN_LOSS_DB = 0.1  # under the baseline, clean sources

_HALO_LEVELS = 10
_CLIP_MARGIN = 8
_LUMA = np.array([0.299, 0.587, 0.114])
_CROP = 192
# (label, photo, factor, source, fx, fy): source is a shrink filter or a degradation.
CROPS = (
    ("face", "grace_hopper", 4, "area", 0.45, 0.18),
    ("text", "signs", 2, "area", 0.30, 0.30),
    ("foliage", "moss", 4, "area", 0.50, 0.50),
    ("night", "dusk_lake", 4, "area", 0.50, 0.45),
    ("compressed", "dogs", 2, "q50", 0.45, 0.55),
)


@dataclass
class Enlargement:
    photo: str
    category: str
    subset: str
    factor: int
    source: str  # shrink filter, or degradation for the degraded set
    psnr: dict[str, float]
    ssim: dict[str, float] = field(default_factory=dict)
    halo_pct: dict[str, float] = field(default_factory=dict)
    noise_level: int | None = None  # what the engine chose (degraded set)


@dataclass
class OwnSize:
    photo: str
    subset: str
    luma_shift: float
    saturation_shift: float
    baseline_luma_shift: float
    baseline_saturation_shift: float
    new_clipping_pct: float
    baseline_new_clipping_pct: float
    jpeg_new_clipping_pct: float  # the original through JPEG q90 with the engine's chroma choice
    jpeg_420_new_clipping_pct: float  # ... and through plain 4:2:0


@dataclass
class Downscale:
    photo: str
    subset: str
    tier: str
    size: str
    hf_ratio: float  # against the Lanczos downscale delivered as JPEG q90 like every method
    baseline_hf_ratio: float
    hf_ratio_unencoded: float  # against the Lanczos downscale's exact pixels (stricter: JPEG drops fine grain)
    overshoot: float
    baseline_overshoot: float
    lanczos_overshoot: float


@dataclass
class PhotoData:
    """A photo of the set as the benchmark uses it."""

    name: str
    category: str
    subset: str
    working: np.ndarray  # RGB, sRGB, long side <= PHOTO_LONG_SIDE, multiple of 4
    original_file: bytes | None = None  # as shipped, for the downscale test
    original_rgb: np.ndarray | None = None  # sRGB pixels of the whole original


# ---------------------------------------------------------------------------------------------- pixels


def to_srgb_rgb(photo: photoset.Photo, cache: Path) -> np.ndarray:
    """The photo's pixels as RGB in sRGB (embedded ICC converted)."""
    rgb = photoset.load_rgb(photo, cache)
    if photo.member.endswith(".dat"):
        return rgb
    with Image.open(photoset.path_of(photo, cache)) as image:
        icc = source_profile(image.info)
    converted = convert_image_to_srgb(Image.fromarray(rgb), icc)
    return rgb if converted is None else np.asarray(converted)


def working_copy(rgb: np.ndarray, long_side: int = PHOTO_LONG_SIDE) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = long_side / max(height, width)
    if scale < 1.0:
        rgb = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    height, width = rgb.shape[:2]
    return np.ascontiguousarray(rgb[: height - height % 4, : width - width % 4])


def load_photos(selection: Sequence[photoset.Photo], cache: Path, downscale: bool = True) -> list[PhotoData]:
    photoset.fetch(cache, selection)
    out = []
    for photo in selection:
        rgb = to_srgb_rgb(photo, cache)
        data = photoset.path_of(photo, cache).read_bytes()
        if photo.member.endswith(".dat"):
            data = png(photoset.load_rgb(photo, cache))
        out.append(
            PhotoData(
                photo.name,
                photo.category,
                photo.subset,
                working_copy(rgb),
                data if downscale else None,
                rgb if downscale else None,
            )
        )
    return out


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
    return lanczos(rgb, size)


def lanczos(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def sensor_noise(rgb: np.ndarray, seed: int = 7) -> np.ndarray:
    """Sensor-like noise: read noise (2 levels) plus shot noise growing with the signal, partly shared by
    the channels (luma grain) and partly per channel (colour noise)."""
    rng = np.random.default_rng(seed)
    values = rgb.astype(np.float32)
    sigma = np.sqrt(4.0 + 0.04 * values)
    shared = rng.standard_normal(rgb.shape[:2], dtype=np.float32)[..., None]
    own = rng.standard_normal(rgb.shape, dtype=np.float32)
    noisy: np.ndarray = np.clip(values + sigma * (0.6 * shared + 0.8 * own) + 0.5, 0, 255).astype(np.uint8)
    return noisy


def degrade(rgb: np.ndarray, how: str) -> bytes:
    """The source a user would upload: a JPEG at quality 50 or 75, or a noisy PNG."""
    if how == "noise":
        return png(sensor_noise(rgb))
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=int(how[1:]))
    return out.getvalue()


# --------------------------------------------------------------------------------------------- metrics


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


def _edges(y: np.ndarray) -> np.ndarray:
    return cv2.dilate(cv2.Canny(np.clip(y, 0, 255).astype(np.uint8), 50, 150), np.ones((3, 3), np.uint8)) > 0


def halo_pct(original: np.ndarray, output: np.ndarray) -> float:
    """% of edge pixels whose luma leaves the original's 3x3 range by more than 10 levels."""
    y_orig, y_out = luma(original).astype(np.float32), luma(output).astype(np.float32)
    edges = _edges(y_orig)
    kernel = np.ones((3, 3), np.uint8)
    high, low = cv2.dilate(y_orig, kernel), cv2.erode(y_orig, kernel)
    over = (y_out > high + _HALO_LEVELS) | (y_out < low - _HALO_LEVELS)
    return 100.0 * float(over[edges].mean()) if edges.any() else 0.0


def overshoot(reference: np.ndarray, output: np.ndarray) -> float:
    """Mean luma overshoot (levels) at edge pixels beyond the reference's 3x3 range; the reference is a box
    (area) downscale, which cannot ring, so what any resize adds there is ringing or halo."""
    y_ref, y_out = luma(reference).astype(np.float32), luma(output).astype(np.float32)
    edges = _edges(y_ref)
    kernel = np.ones((3, 3), np.uint8)
    high, low = cv2.dilate(y_ref, kernel), cv2.erode(y_ref, kernel)
    over = np.maximum(np.maximum(y_out - high, low - y_out), 0.0)
    return float(over[edges].mean()) if edges.any() else 0.0


def hf_energy(rgb: np.ndarray) -> float:
    """Mean squared high-pass luma (the image minus its Gaussian blur, sigma 1 pixel): the finest detail."""
    y = luma(rgb).astype(np.float32)
    return float(np.mean((y - cv2.GaussianBlur(y, (0, 0), 1.0)) ** 2))


def saturation(rgb: np.ndarray) -> float:
    """Mean chroma: max minus min channel, in levels."""
    values = rgb.astype(np.int16)
    return float((values.max(axis=2) - values.min(axis=2)).mean())


# ------------------------------------------------------------------------------------------- engines


def baseline_engine(revision: str, folder: Path) -> Path:
    """Extract `imaging/` of a git revision into folder; return the folder to put first on sys.path."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "imaging"], cwd=PROJECT_ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


@dataclass(frozen=True)
class Call:
    """One engine call: input bytes, the long side wanted, super-resolution or classic."""

    data: bytes
    long_side: int
    sr: bool


def run_engine(calls: list[Call], engine_path: Path | None, jobs: int, cache: Path) -> list[np.ndarray]:
    """Every call through one engine in `jobs` fresh child processes; outputs decoded to RGB."""
    outputs: list[bytes] = [b""] * len(calls)
    with tempfile.TemporaryDirectory() as tmp:
        children = []
        for job in range(jobs):
            mine = list(range(job, len(calls), jobs))
            calls_file, outputs_file = Path(tmp) / f"calls-{job}", Path(tmp) / f"outputs-{job}"
            calls_file.write_bytes(pickle.dumps([(calls[i].data, calls[i].long_side, calls[i].sr) for i in mine]))
            command = engine_child.command(engine_path, calls_file, outputs_file, cache)
            children.append((mine, outputs_file, subprocess.Popen(command, cwd=PROJECT_ROOT)))
        for mine, outputs_file, child in children:
            if child.wait() != 0:
                raise RuntimeError(f"an engine child failed with exit status {child.returncode}")
            engine_file, results = pickle.loads(outputs_file.read_bytes())
            expected = Path(engine_path or PROJECT_ROOT) / "imaging" / "__init__.py"
            if Path(engine_file).resolve() != expected.resolve():
                raise RuntimeError(f"the child ran {engine_file}, not {expected}")
            for index, data in zip(mine, results, strict=True):
                outputs[index] = data
    return [decode_rgb(data) for data in outputs]


def network_only(small: np.ndarray, factor: int, upscale: srcache.Upscale) -> np.ndarray:
    """The raw network (noise level -1, no finish), delivered as JPEG like the others."""
    passes = {2: 1, 4: 2}[factor]
    out = upscale(np.ascontiguousarray(small[..., ::-1]), passes, EngineConfig(engine="sr"), lambda: None)
    return deliver(np.ascontiguousarray(out[..., ::-1]))


# ----------------------------------------------------------------------------------------- measuring


@dataclass
class Plan:
    """Everything one run computes, as engine calls gathered first so both engines run them in parallel."""

    photos: list[PhotoData]
    factors: tuple[int, ...]
    calls: list[Call] = field(default_factory=list)
    index: dict[tuple[str, ...], int] = field(default_factory=dict)

    def add(self, key: tuple[str, ...], call: Call) -> None:
        self.index[key] = len(self.calls)
        self.calls.append(call)


def plan(photos: list[PhotoData], factors: tuple[int, ...], degraded: bool) -> Plan:
    p = Plan(photos, factors)
    for photo in photos:
        height, width = photo.working.shape[:2]
        long_side = max(height, width)
        for factor in factors:
            for how in SHRINKS:
                p.add((photo.name, str(factor), how), Call(png(shrink(photo.working, factor, how)), long_side, True))
        if degraded and 2 in factors:
            small = shrink(photo.working, 2, "area")
            for how in DEGRADATIONS:
                p.add((photo.name, "2", how), Call(degrade(small, how), long_side, True))
        p.add((photo.name, "own"), Call(png(photo.working), long_side, False))
        if photo.original_file is not None and photo.original_rgb is not None:
            for tier in DOWNSCALE_TIERS:
                if TIER_LONG_SIDES[tier] < max(photo.original_rgb.shape[:2]):
                    p.add((photo.name, tier), Call(photo.original_file, TIER_LONG_SIDES[tier], False))
    return p


def measure(
    photos: list[PhotoData],
    factors: tuple[int, ...],
    baseline_path: Path | None,
    jobs: int = 2,
    cache: Path = srcache.DEFAULT_FOLDER,
    degraded: bool = True,
    crops_dir: Path | None = None,
) -> tuple[list[Enlargement], list[OwnSize], list[Downscale]]:
    """Run both engines over the plan, then score every output in this process."""
    network = srcache.cached(sr.upscale, cache)
    p = plan(photos, factors, degraded)
    started = time.perf_counter()
    new = run_engine(p.calls, None, jobs, cache)
    print(f"engine: {len(p.calls)} calls in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    old = run_engine(p.calls, baseline_path, jobs, cache) if baseline_path else new
    print(f"baseline: {len(p.calls)} calls in {time.perf_counter() - started:.0f} s", flush=True)
    enlargements: list[Enlargement] = []
    own: list[OwnSize] = []
    downscales: list[Downscale] = []
    for photo in photos:
        enlargements += _enlargements(photo, p, new, old, factors, network, crops_dir)
        if degraded and 2 in factors:
            enlargements += _degraded(photo, p, new, old, crops_dir)
        own.append(_own_size(photo, new[p.index[(photo.name, "own")]], old[p.index[(photo.name, "own")]]))
        for tier in DOWNSCALE_TIERS:
            if (photo.name, tier) in p.index:
                downscales.append(
                    _downscale(photo, tier, new[p.index[(photo.name, tier)]], old[p.index[(photo.name, tier)]])
                )
    return enlargements, own, downscales


def _scored(photo: PhotoData, factor: int, source: str, outputs: dict[str, np.ndarray]) -> Enlargement:
    original = photo.working
    return Enlargement(
        photo.name,
        photo.category,
        photo.subset,
        factor,
        source,
        psnr={m: round(psnr(original, o), 3) for m, o in outputs.items()},
        ssim={m: round(ssim(original, o), 4) for m, o in outputs.items()},
        halo_pct={m: round(halo_pct(original, o), 2) for m, o in outputs.items()},
    )


def _enlargements(
    photo: PhotoData,
    p: Plan,
    new: list[np.ndarray],
    old: list[np.ndarray],
    factors: Iterable[int],
    network: srcache.Upscale,
    crops: Path | None,
) -> list[Enlargement]:
    rows = []
    height, width = photo.working.shape[:2]
    for factor in factors:
        for how in SHRINKS:
            small = shrink(photo.working, factor, how)
            at = p.index[(photo.name, str(factor), how)]
            outputs = {
                "engine": new[at],
                "baseline": old[at],
                "network": network_only(small, factor, network),
                "bicubic": deliver(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)),
                "lanczos": deliver(cv2.resize(small, (width, height), interpolation=cv2.INTER_LANCZOS4)),
            }
            rows.append(_scored(photo, factor, how, outputs))
            _maybe_crop(photo, factor, how, outputs, crops)
    return rows


def _degraded(
    photo: PhotoData, p: Plan, new: list[np.ndarray], old: list[np.ndarray], crops: Path | None
) -> list[Enlargement]:
    rows = []
    height, width = photo.working.shape[:2]
    small = shrink(photo.working, 2, "area")
    for how in DEGRADATIONS:
        data = degrade(small, how)
        decoded = decode_rgb(data)
        at = p.index[(photo.name, "2", how)]
        outputs = {
            "engine": new[at],
            "baseline": old[at],
            "bicubic": deliver(cv2.resize(decoded, (width, height), interpolation=cv2.INTER_CUBIC)),
        }
        bgr = np.ascontiguousarray(decoded[..., ::-1])
        level = restoration.sr_noise_level(restoration.jpeg_quality(data), restoration.noise_sigma(bgr), -1)
        row = _scored(photo, 2, how, outputs)
        row.noise_level = level
        rows.append(row)
        _maybe_crop(photo, 2, how, outputs, crops)
    return rows


def _own_size(photo: PhotoData, new: np.ndarray, old: np.ndarray) -> OwnSize:
    original = photo.working
    base_luma, base_sat = float(luma(original).mean()), saturation(original)
    return OwnSize(
        photo=photo.name,
        subset=photo.subset,
        luma_shift=round(float(luma(new).mean()) - base_luma, 2),
        saturation_shift=round(saturation(new) - base_sat, 2),
        baseline_luma_shift=round(float(luma(old).mean()) - base_luma, 2),
        baseline_saturation_shift=round(saturation(old) - base_sat, 2),
        new_clipping_pct=round(new_clipping_pct(original, new), 3),
        baseline_new_clipping_pct=round(new_clipping_pct(original, old), 3),
        jpeg_new_clipping_pct=round(new_clipping_pct(original, deliver(original)), 3),
        jpeg_420_new_clipping_pct=round(new_clipping_pct(original, jpeg_only(original)), 3),
    )


def _downscale(photo: PhotoData, tier: str, new: np.ndarray, old: np.ndarray) -> Downscale:
    assert photo.original_rgb is not None
    size = (new.shape[1], new.shape[0])
    exact = lanczos(photo.original_rgb, size)
    reference = deliver(exact)
    box = cv2.resize(photo.original_rgb, size, interpolation=cv2.INTER_AREA)
    hf = hf_energy(reference)
    return Downscale(
        photo=photo.name,
        subset=photo.subset,
        tier=tier,
        size=f"{size[0]}x{size[1]}",
        hf_ratio=round(hf_energy(new) / hf, 3),
        baseline_hf_ratio=round(hf_energy(old) / hf, 3),
        hf_ratio_unencoded=round(hf_energy(new) / hf_energy(exact), 3),
        overshoot=round(overshoot(box, new), 3),
        baseline_overshoot=round(overshoot(box, old), 3),
        lanczos_overshoot=round(overshoot(box, reference), 3),
    )


def _maybe_crop(photo: PhotoData, factor: int, source: str, outputs: dict[str, np.ndarray], crops: Path | None) -> None:
    for label, name, crop_factor, crop_source, fx, fy in CROPS:
        if crops is not None and (name, crop_factor, crop_source) == (photo.name, factor, source):
            save_crop(label, photo.working, outputs, fx, fy, crops)


def save_crop(
    label: str, original: np.ndarray, outputs: dict[str, np.ndarray], fx: float, fy: float, out_dir: Path
) -> Path:
    """original | bicubic | today's engine | new engine, _CROP px each at 100 %, labelled, as PNG."""
    height, width = original.shape[:2]
    side = min(_CROP, height, width)
    x, y = int(fx * (width - side)), int(fy * (height - side))
    panels = []
    named = (("original", original), ("bicubic", outputs["bicubic"]), ("before", outputs["baseline"]))
    for name, pixels in (*named, ("engine", outputs["engine"])):
        panel = np.ascontiguousarray(pixels[y : y + side, x : x + side])
        cv2.putText(panel, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(panel, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        panels += [panel, np.full((side, 4, 3), 255, np.uint8)]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"quality-{label}.png"
    Image.fromarray(np.hstack(panels[:-1])).save(path, optimize=True)
    return path


def deblock_study(photos: list[PhotoData]) -> list[dict[str, Any]]:
    """Would a deblocking/denoising pass pay off for outputs at or below the source's size? JPEG q50/q75
    sources at their own size and shrunk 2x (this engine's shrink), against the clean original (own size)
    or its Lanczos downscale; candidates run on the source, as the engine would have to. PSNR gain over
    doing nothing, and CPU time per megapixel."""
    candidates: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "bilateral (5 px, 12 levels)": lambda bgr: cv2.bilateralFilter(bgr, 5, 12, 2),
        "Gaussian σ 0.5": lambda bgr: cv2.GaussianBlur(bgr, (3, 3), 0.5),
        "non-local means (h 3)": lambda bgr: cv2.fastNlMeansDenoisingColored(bgr, None, 3, 3, 5, 11),
    }
    gains: dict[tuple[str, str, str], list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for photo in photos:
        clean = photo.working
        height, width = clean.shape[:2]
        half = (width // 2, height // 2)
        references = {"own size": clean, "2x shrink": lanczos(clean, half)}
        for quality in ("q50", "q75"):
            bgr = np.ascontiguousarray(decode_rgb(degrade(clean, quality))[..., ::-1])
            for name, candidate in candidates.items():
                started = time.thread_time()
                filtered = candidate(bgr)
                seconds.setdefault(name, []).append((time.thread_time() - started) / (height * width / 1e6))
                for size, reference in references.items():
                    plain = bgr if size == "own size" else _pixels.resize(bgr.copy(), half)
                    out = filtered if size == "own size" else _pixels.resize(filtered.copy(), half)
                    gain = psnr(reference, out[..., ::-1]) - psnr(reference, plain[..., ::-1])
                    gains.setdefault((name, quality, size), []).append(gain)
    return [
        {"candidate": name, "source": quality, "output": size, **_stats(values),
         "cpu_ms_per_mp": round(1000 * statistics.median(seconds[name]), 1)}
        for (name, quality, size), values in gains.items()
    ]  # fmt: skip


# -------------------------------------------------------------------------------------------- summary


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.mean(values), 3),
        "median": round(statistics.median(values), 3),
        "worst": round(min(values), 3),
        "n": len(values),
    }


def _gain(row: Enlargement, method: str, against: str = "bicubic") -> float:
    return row.psnr[method] - row.psnr[against]


def summarise(rows: list[Enlargement], own: list[OwnSize], downscales: list[Downscale]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    clean = [r for r in rows if r.source in SHRINKS]
    for factor in sorted({r.factor for r in clean}):
        at = [r for r in clean if r.factor == factor]
        block: dict[str, Any] = {}
        for subset in ("all", photoset.TRAINING, photoset.REPORT):
            part = [r for r in at if subset == "all" or r.subset == subset]
            if not part:
                continue
            block[subset] = {m: _stats([_gain(r, m) for r in part]) for m in METHODS if m != "bicubic"}
        block["below_bicubic_by_more_than_0.3_db"] = sorted(
            f"{r.photo} {r.source}" for r in at if _gain(r, "engine") < -MAX_LOSS_DB
        )
        block["worst_case"] = min(at, key=lambda r: _gain(r, "engine")).photo
        block["categories"] = {
            c: round(statistics.mean(_gain(r, "engine") for r in at if r.category == c), 3)
            for c in photoset.CATEGORIES
            if any(r.category == c for r in at)
        }
        block["clean_engine_minus_baseline"] = _stats([_gain(r, "engine", "baseline") for r in at])
        block["mean_psnr"] = {m: round(statistics.mean(r.psnr[m] for r in at), 3) for m in METHODS}
        block["mean_ssim"] = {m: round(statistics.mean(r.ssim[m] for r in at), 4) for m in METHODS}
        block["mean_halo_pct"] = {m: round(statistics.mean(r.halo_pct[m] for r in at), 2) for m in METHODS}
        summary[f"{factor}x"] = block
    degraded = [r for r in rows if r.source in DEGRADATIONS]
    if degraded:
        summary["degraded"] = {
            how: {
                subset: {
                    "engine_minus_baseline": _stats([_gain(r, "engine", "baseline") for r in part]),
                    "engine_minus_bicubic": _stats([_gain(r, "engine") for r in part]),
                    "baseline_minus_bicubic": _stats([_gain(r, "baseline") for r in part]),
                    "noise_levels": sorted({int(r.noise_level or 0) for r in part}),
                }
                for subset in ("all", photoset.TRAINING, photoset.REPORT)
                if (part := [r for r in degraded if r.source == how and subset in ("all", r.subset)])
            }
            for how in DEGRADATIONS
        }
        jpeg = [r for r in degraded if r.source != "noise"]
        summary["degraded"]["jpeg_engine_minus_baseline"] = _stats([_gain(r, "engine", "baseline") for r in jpeg])
    summary["own_size"] = {
        "max_abs_luma_shift": max(abs(o.luma_shift) for o in own),
        "max_abs_saturation_shift": max(abs(o.saturation_shift) for o in own),
        "baseline_max_abs_luma_shift": max(abs(o.baseline_luma_shift) for o in own),
        "max_clipping_over_jpeg_pct": round(max(o.new_clipping_pct - o.jpeg_new_clipping_pct for o in own), 3),
        "max_clipping_over_jpeg_420_pct": round(max(o.new_clipping_pct - o.jpeg_420_new_clipping_pct for o in own), 3),
    }
    if downscales:
        summary["downscale"] = {
            "hf_ratio": _stats([d.hf_ratio for d in downscales]),
            "baseline_hf_ratio": _stats([d.baseline_hf_ratio for d in downscales]),
            "hf_ratio_unencoded": _stats([d.hf_ratio_unencoded for d in downscales]),
            "max_overshoot_over_lanczos": round(max(d.overshoot - d.lanczos_overshoot for d in downscales), 3),
            "cells_above_lanczos_overshoot": sum(d.overshoot > d.lanczos_overshoot for d in downscales),
            "cells": len(downscales),
            "mean_overshoot": round(statistics.mean(d.overshoot for d in downscales), 3),
            "mean_lanczos_overshoot": round(statistics.mean(d.lanczos_overshoot for d in downscales), 3),
            "mean_baseline_overshoot": round(statistics.mean(d.baseline_overshoot for d in downscales), 3),
        }
    return summary


def verdicts(summary: dict[str, Any]) -> list[str]:
    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines = []
    for factor, target in TARGET_GAIN_DB.items():
        block = summary.get(f"{factor}x")
        if block is None:
            continue
        gain = block["all"]["engine"]["mean"]
        losers = block["below_bicubic_by_more_than_0.3_db"]
        lines.append(f"- {factor}x: mean gain over bicubic {gain:+.2f} dB (target ≥ +{target}): {met(gain >= target)}")
        lines.append(
            f"- {factor}x: photos below bicubic by > {MAX_LOSS_DB} dB: {', '.join(losers) or 'none'}: {met(not losers)}"
        )
    own = summary["own_size"]
    lines.append(
        f"- own size: largest mean luma shift {own['max_abs_luma_shift']:.2f} levels (≤ {MAX_LUMA_SHIFT}): "
        f"{met(own['max_abs_luma_shift'] <= MAX_LUMA_SHIFT)}; new clipping over JPEG alone "
        f"{own['max_clipping_over_jpeg_pct']:+.3f} % (≤ {MAX_EXTRA_CLIPPING}): "
        f"{met(own['max_clipping_over_jpeg_pct'] <= MAX_EXTRA_CLIPPING)} (over a plain 4:2:0 JPEG: "
        f"{own['max_clipping_over_jpeg_420_pct']:+.3f} %, the 4:4:4 chroma kept for colour detail)"
    )
    if "downscale" in summary:
        down = summary["downscale"]
        lines.append(
            f"- downscale: lowest high-frequency ratio to Lanczos {down['hf_ratio']['worst']:.2f} (≥ {MIN_HF_RATIO}): "
            f"{met(down['hf_ratio']['worst'] >= MIN_HF_RATIO)}; largest overshoot over Lanczos's "
            f"{down['max_overshoot_over_lanczos']:+.3f} levels (≤ 0): {met(down['max_overshoot_over_lanczos'] <= 0)}; "
            f"above Lanczos's on {down['cells_above_lanczos_overshoot']} of {down['cells']} downscales; mean overshoot "
            f"{down['mean_overshoot']:.2f} levels (Lanczos {down['mean_lanczos_overshoot']:.2f}, baseline "
            f"{down['mean_baseline_overshoot']:.2f}): {met(down['mean_overshoot'] <= down['mean_lanczos_overshoot'])}"
        )
    if "degraded" in summary:
        jpeg = summary["degraded"]["jpeg_engine_minus_baseline"]["mean"]
        lines.append(
            f"- degraded JPEG sources (q50, q75), 2x: engine − baseline {jpeg:+.2f} dB on average "
            f"(≥ +{TARGET_DEGRADED_GAIN_DB}): {met(jpeg >= TARGET_DEGRADED_GAIN_DB)}"
        )
    if "2x" in summary:
        worst = min(summary[k]["clean_engine_minus_baseline"]["worst"] for k in ("2x", "4x") if k in summary)
        lines.append(
            f"- clean sources: worst engine − baseline {worst:+.2f} dB (≥ −{MAX_CLEAN_LOSS_DB}): "
            f"{met(worst >= -MAX_CLEAN_LOSS_DB)}"
        )
    return lines


# -------------------------------------------------------------------------------------------- report


def _stat_cell(s: dict[str, float]) -> str:
    return f"{s['mean']:+.2f} / {s['median']:+.2f} / {s['worst']:+.2f}"


def render_markdown(
    rows: list[Enlargement],
    own: list[OwnSize],
    downscales: list[Downscale],
    summary: dict[str, Any],
    meta: dict[str, Any],
    deblock: list[dict[str, Any]] | None = None,
) -> str:
    lines = [
        "# Quality benchmark",
        "",
        f"`python -m bench.quality` on {meta['photos']} photos ({meta['training']} training, {meta['report']} report; "
        f"bench/photoset.py), {meta['cpu_count']} CPUs, Python {meta['python']}, OpenCV {meta['opencv']}; "
        f"baseline = the engine of {meta['baseline']}; load average {meta['load_average_before']:.2f} before, "
        f"{meta['load_average_after']:.2f} after.",
        "",
        f"Each photo (long side ≤ {PHOTO_LONG_SIDE}) shrunk by the factor (area or Lanczos), enlarged back to its own "
        "size, compared with the original. engine: this engine (super-resolution + finish, as the worker configures "
        "it); baseline: the engine before; network: waifu2x alone (noise level -1, no finish); bicubic / lanczos: "
        "OpenCV. Every output is delivered as the engine delivers (JPEG q90, same chroma choice). PSNR in dB over "
        "RGB. Thresholds of the engine were chosen on the training photos only; the report photos were never used "
        "to choose anything.",
        "",
        "## Targets",
        "",
        *verdicts(summary),
        "",
        "## Gain over bicubic (dB): mean / median / worst",
        "",
        "| factor | subset | photos × shrinks | engine | baseline | network | lanczos |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key in (k for k in summary if k.endswith("x")):
        for subset in ("all", photoset.TRAINING, photoset.REPORT):
            s = summary[key].get(subset)
            if s:
                row_cells = " | ".join(_stat_cell(s[m]) for m in ("engine", "baseline", "network", "lanczos"))
                lines.append(f"| {key} | {subset} | {s['engine']['n']} | {row_cells} |")
    lines += ["", "Per category, engine gain over bicubic (dB, mean):", ""]
    keys = [k for k in summary if k.endswith("x")]
    lines += ["| category | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for category in photoset.CATEGORIES:
        if all(category in summary[k]["categories"] for k in keys):
            lines.append(
                f"| {category} | " + " | ".join(f"{summary[k]['categories'][category]:+.2f}" for k in keys) + " |"
            )
    lines += ["", "Mean PSNR / SSIM / halo % of edge pixels:", ""]
    lines += ["| factor | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for key in keys:
        s = summary[key]
        lines.append(
            f"| {key} | "
            + " | ".join(
                f"{s['mean_psnr'][m]:.2f} / {s['mean_ssim'][m]:.3f} / {s['mean_halo_pct'][m]:g}" for m in METHODS
            )
            + " |"
        )
    if "degraded" in summary:
        lines += [
            "",
            "## Degraded sources (2x, area-shrunk, then JPEG q50 / q75 or sensor-like noise), against the clean "
            "original",
            "",
            "| source | subset | engine − baseline | engine − bicubic | baseline − bicubic | noise levels chosen |",
            "|---|---|---:|---:|---:|---|",
        ]
        for how in DEGRADATIONS:
            for subset, s in summary["degraded"][how].items():
                lines.append(
                    f"| {how} | {subset} | {_stat_cell(s['engine_minus_baseline'])} "
                    f"| {_stat_cell(s['engine_minus_bicubic'])} "
                    f"| {_stat_cell(s['baseline_minus_bicubic'])} | {', '.join(map(str, s['noise_levels']))} |"
                )
    lines += [
        "",
        "## Per photo: engine − bicubic (dB)",
        "",
        "| photo | category | subset | "
        + " | ".join(f"{f}x {how}" for f in sorted({r.factor for r in rows}) for how in SHRINKS)
        + " | "
        + " | ".join(f"2x {d} (− baseline)" for d in DEGRADATIONS)
        + " |",
        "|---|---|---|" + "---:|" * (2 * len({r.factor for r in rows}) + len(DEGRADATIONS)),
    ]
    by_photo: dict[str, dict[tuple[int, str], Enlargement]] = {}
    for r in rows:
        by_photo.setdefault(r.photo, {})[(r.factor, r.source)] = r
    for name, cells in by_photo.items():
        first = next(iter(cells.values()))
        values = [
            f"{_gain(cells[(f, how)], 'engine'):+.2f}" if (f, how) in cells else "–"
            for f in sorted({r.factor for r in rows})
            for how in SHRINKS
        ]
        values += [
            f"{_gain(cells[(2, d)], 'engine'):+.2f} ({_gain(cells[(2, d)], 'engine', 'baseline'):+.2f})"
            if (2, d) in cells
            else "–"
            for d in DEGRADATIONS
        ]
        lines.append(f"| {name} | {first.category} | {first.subset} | " + " | ".join(values) + " |")
    lines += [
        "",
        "## Own size: the photo's look (classic path, no resize)",
        "",
        "Mean luma and saturation (mean max−min channel) shift in levels against the original; new clipping: % of "
        f"pixels with a channel at 0 or 255 that was more than {_CLIP_MARGIN} levels away. JPEG alone: the "
        "original through the engine's encoder (q90, its chroma choice); JPEG 4:2:0: through a plain q90 4:2:0.",
        "",
        "| photo | subset | luma shift (baseline) | saturation shift (baseline) "
        "| new clipping % (baseline, JPEG alone, JPEG 4:2:0) |",
        "|---|---|---:|---:|---:|",
    ]
    for o in own:
        lines.append(
            f"| {o.photo} | {o.subset} | {o.luma_shift:+.2f} ({o.baseline_luma_shift:+.2f}) "
            f"| {o.saturation_shift:+.2f} ({o.baseline_saturation_shift:+.2f}) | {o.new_clipping_pct:g} "
            f"({o.baseline_new_clipping_pct:g}, {o.jpeg_new_clipping_pct:g}, {o.jpeg_420_new_clipping_pct:g}) |"
        )
    if downscales:
        lines += [
            "",
            "## Downscale: sharpness and overshoot against Lanczos (classic path, original file as shipped)",
            "",
            "High-frequency ratio: energy of luma minus its Gaussian blur (σ 1 px) over that of a Pillow Lanczos "
            "downscale of the same photo delivered as JPEG q90 like every method (1.0 = as sharp); also against "
            "the Lanczos pixels before encoding (JPEG q90 removes some of the finest grain). Overshoot: mean "
            "luma excess (levels) at edge pixels "
            "beyond the 3×3 range of a box (area) downscale, which cannot ring.",
            "",
            "| photo | subset | tier | size | HF ratio (baseline) | HF ratio to unencoded Lanczos "
            "| overshoot (baseline, Lanczos) |",
            "|---|---|---|---|---:|---:|---:|",
        ]
        for d in downscales:
            lines.append(
                f"| {d.photo} | {d.subset} | {d.tier} | {d.size} | {d.hf_ratio:.2f} ({d.baseline_hf_ratio:.2f}) | "
                f"{d.hf_ratio_unencoded:.2f} | "
                f"{d.overshoot:.2f} ({d.baseline_overshoot:.2f}, {d.lanczos_overshoot:.2f}) |"
            )
    if deblock:
        lines += [
            "",
            "## Deblocking for outputs at or below the source's size (training photos)",
            "",
            "JPEG sources at their own size or shrunk 2x, a filter on the source first, against the clean original "
            "(or its Lanczos downscale): PSNR gain over no filter, mean / median / worst, and CPU per source MP.",
            "",
            "| candidate | source | output | gain dB | CPU ms per MP |",
            "|---|---|---|---:|---:|",
        ]
        for entry in deblock:
            lines.append(
                f"| {entry['candidate']} | {entry['source']} | {entry['output']} | {entry['mean']:+.2f} / "
                f"{entry['median']:+.2f} / {entry['worst']:+.2f} | {entry['cpu_ms_per_mp']:g} |"
            )
    lines.append("")
    return "\n".join(lines)


def run(
    selection: Sequence[photoset.Photo],
    factors: tuple[int, ...],
    out_dir: Path,
    crops_dir: Path | None,
    baseline: str,
    jobs: int,
    cache: Path,
    photo_cache: Path,
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    photos = load_photos(selection, photo_cache)
    with tempfile.TemporaryDirectory() as tmp:
        baseline_path = baseline_engine(baseline, Path(tmp)) if baseline else None
        rows, own, downscales = measure(photos, factors, baseline_path, jobs, cache, crops_dir=crops_dir)
    deblock = deblock_study([p for p in photos if p.subset == photoset.TRAINING])
    summary = summarise(rows, own, downscales)
    meta = {
        "photos": len(photos),
        "training": sum(p.subset == photoset.TRAINING for p in photos),
        "report": sum(p.subset == photoset.REPORT for p in photos),
        "baseline": baseline or "(none)",
        "cpu_count": len(os.sched_getaffinity(0)),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "python": platform.python_version(),
        "opencv": cv2.__version__,
    }
    markdown = render_markdown(rows, own, downscales, summary, meta, deblock)
    print()
    print(markdown)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "summary": summary,
        "enlargements": [asdict(r) for r in rows],
        "own_size": [asdict(o) for o in own],
        "downscale": [asdict(d) for d in downscales],
        "deblock_study": deblock,
    }
    (out_dir / "quality.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / "quality.md").write_text(markdown)
    return payload


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", choices=(photoset.TRAINING, photoset.REPORT), help="only one subset")
    parser.add_argument("--photos", nargs="+", help="only these photos (names from bench/photoset.py)")
    parser.add_argument("--factors", nargs="+", type=int, default=list(FACTORS), choices=FACTORS)
    parser.add_argument(
        "--baseline", default=BASELINE_REV, help="git revision of the engine to compare with ('' for none)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="engine child processes")
    parser.add_argument("--sr-cache", type=Path, default=srcache.DEFAULT_FOLDER, help="network output cache")
    parser.add_argument("--photo-cache", type=Path, default=photoset.DEFAULT_CACHE, help="extracted photo set")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for quality.json and .md")
    parser.add_argument("--no-crops", action="store_true", help="do not write docs/images/quality-*.png")
    args = parser.parse_args(argv)
    if shutil.which("git") is None and args.baseline:
        parser.error("the baseline engine is extracted with git")
    selection = photoset.photos(args.subset, args.photos)
    crops = None if args.no_crops else CROPS_DIR
    run(selection, tuple(args.factors), args.out, crops, args.baseline, args.jobs, args.sr_cache, args.photo_cache)


if __name__ == "__main__":
    main()
