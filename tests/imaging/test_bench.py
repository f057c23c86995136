"""The benchmark's building blocks, on small images, so `python -m bench.imaging` does not rot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
