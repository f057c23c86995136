"""The benchmark's building blocks, on small images, so `python -m bench.imaging` does not rot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bench import photoset, quality
from bench.imaging import measure_cell, render_markdown
from bench.photos import photo_like, photo_like_jpeg

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "photos"


def test_photo_like_is_deterministic_and_textured() -> None:
    first, again, other = photo_like(300, 200, seed=1), photo_like(300, 200, seed=1), photo_like(300, 200, seed=2)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert len(np.unique(first.reshape(-1, 3), axis=0)) > 20_000  # not flat colour
    neighbour_difference = np.abs(np.diff(first.astype(int), axis=1)).mean()
    assert neighbour_difference > 4  # grain and fine texture, like a real photo


def test_a_cell_is_measured_and_rendered(tmp_path: Path) -> None:
    source = tmp_path / "small.jpg"
    source.write_bytes(photo_like_jpeg(600, 400, seed=3))
    cell = measure_cell("6MP", source, "TIER_1K", runs=1, naive_runs=1)
    assert cell.output == "1024x683"
    assert cell.engine_ms > 0 and cell.floor_ms > 0 and cell.ratio == round(cell.engine_ms / cell.floor_ms, 2)
    assert cell.engine_ips_2_workers > 0 and cell.peak_rss_mb >= cell.idle_rss_mb > 0
    meta = {"cpu_count": 2, "python": "3", "opencv": "5", "pillow": "13", "runs": 1}
    meta |= {"load_average_before": 0.1, "load_average_after": 0.2}
    markdown = render_markdown([cell], meta)
    assert "| 6MP | TIER_1K | 1024x683 |" in markdown
    assert "TIER_1K CPU ratio to floor" in markdown and "TIER_1K throughput" in markdown


def test_quality_metrics_see_what_they_measure() -> None:
    original = photo_like(96, 64, seed=4)
    assert quality.psnr(original, original) == 99.0 and quality.ssim(original, original) > 0.999
    blurred = cv2.GaussianBlur(original, (0, 0), 2)
    assert quality.psnr(original, blurred) < 30 and quality.ssim(original, blurred) < 0.9
    step = np.full((40, 40, 3), 60, np.uint8)
    step[:, 20:] = 190
    ringing = step.copy()
    ringing[:, 20] = 230  # overshoot on the bright side of the edge
    assert quality.halo_pct(step, step) == 0 and quality.halo_pct(step, ringing) > 20
    pushed = original.copy()
    pushed[:8] = 255
    assert quality.new_clipping_pct(original, original) == 0 and quality.new_clipping_pct(original, pushed) > 10


def _tiny_photo(name: str, subset: str) -> quality.PhotoData:
    with Image.open(PHOTOS / "coffee.png") as image:
        rgb = np.asarray(image.convert("RGB"))
    working = np.ascontiguousarray(cv2.resize(rgb, (64, 40), interpolation=cv2.INTER_AREA))
    original = np.ascontiguousarray(cv2.resize(rgb, (1200, 800), interpolation=cv2.INTER_CUBIC))
    return quality.PhotoData(name, "indoor", subset, working, quality.png(original), original)


def test_the_quality_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    photos = [_tiny_photo("coffee", photoset.TRAINING), _tiny_photo("coffee2", photoset.REPORT)]
    baseline = quality.baseline_engine("HEAD", tmp_path / "engine")  # this tree's last commit, run from git
    rows, own, downscales = quality.measure(photos, (2,), baseline, jobs=1, cache=tmp_path / "cache")
    assert [(r.factor, r.source) for r in rows[:5]] == [
        (2, "area"),
        (2, "lanczos"),
        (2, "q50"),
        (2, "q75"),
        (2, "noise"),
    ]
    assert all(set(r.psnr) == set(quality.METHODS) for r in rows if r.source in quality.SHRINKS)
    assert [d.tier for d in downscales] == ["TIER_1K", "TIER_1K"]  # 1200 px: only TIER_1K is a downscale
    summary = quality.summarise(rows, own, downscales)
    assert summary["2x"][photoset.TRAINING]["engine"]["n"] == 2 and summary["2x"]["all"]["engine"]["n"] == 4
    meta = {"photos": 2, "training": 1, "report": 1, "baseline": "HEAD", "cpu_count": 2, "python": "3", "opencv": "5"}
    meta |= {"load_average_before": 0.1, "load_average_after": 0.2}
    markdown = quality.render_markdown(rows, own, downscales, summary, meta)
    assert "- 2x: mean gain over bicubic" in markdown and "| coffee | indoor | training |" in markdown
    assert any((tmp_path / "cache").glob("*.npy"))  # the network's outputs were cached for the next run


def test_the_baseline_runs_the_other_engine_not_this_one(tmp_path: Path) -> None:
    folder = quality.baseline_engine("HEAD", tmp_path / "engine")
    (folder / "imaging" / "marker.txt").write_text("the extracted engine")
    call = quality.Call(quality.png(photo_like(40, 30, seed=1)), 40, False)
    [out] = quality.run_engine([call], folder, 1, tmp_path / "cache")  # checks which imaging/ the child ran
    assert out.shape == (30, 40, 3)


def test_the_network_cache_returns_what_the_network_computed(tmp_path: Path) -> None:
    from bench import srcache
    from imaging import EngineConfig, sr

    pixels = photo_like(48, 32, seed=9)
    config = EngineConfig(engine="sr", sr_tile_size=32)
    calls: list[int] = []

    def counted(bgr: np.ndarray, passes: int, cfg: EngineConfig, after_tile: Callable[[], None]) -> np.ndarray:
        calls.append(passes)
        return sr.upscale(bgr, passes, cfg, after_tile)

    upscale = srcache.cached(counted, tmp_path)
    first, again = (upscale(pixels, 1, config, lambda: None) for _ in range(2))
    assert np.array_equal(first, sr.upscale(pixels, 1, config, lambda: None)) and np.array_equal(first, again)
    assert calls == [1] and len(list(tmp_path.glob("*.npy"))) == 1
