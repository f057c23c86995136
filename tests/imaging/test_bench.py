"""The benchmark's building blocks, on small images, so `python -m bench.imaging` does not rot."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bench import quality
from bench.imaging import measure_cell, render_markdown
from bench.photos import photo_like, photo_like_jpeg


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
    assert "TIER_1K ratio to floor" in markdown and "TIER_1K throughput" in markdown


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


def test_the_quality_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    photos = {"coffee.png": cv2.resize(quality.load_srgb(quality.PHOTOS_DIR / "coffee.png"), (64, 40))}
    rows, own, speeds = quality.measure(photos, (2,), None, in_child=False)
    assert [(r.factor, r.shrink) for r in rows] == [(2, "area"), (2, "lanczos")]
    assert all(set(r.psnr) == set(quality.METHODS) for r in rows)
    summary = quality.summarise(rows, own)
    meta = {"cpu_count": 2, "python": "3", "opencv": "5", "engine": "x"}
    meta |= {"load_average_before": 0.1, "load_average_after": 0.2}
    markdown = quality.render_markdown(rows, own, speeds, summary, meta)
    assert "- 2x: mean gain" in markdown and "| coffee.png | 2x | area |" in markdown
    assert all(s.calls == 2 and s.output_mp > 0 for s in speeds)
