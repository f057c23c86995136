"""The SR batch benchmark's arithmetic, quickly, so `python -m bench.sr_batch` does not rot: the network's cost per
pixel read from the model file, the pixels it produces per image, and the report."""

import pytest

from bench.sr_batch import most_at_once, network_macs_per_output_pixel, network_output_pixels, render


@pytest.mark.usefixtures("sr_runtime")
def test_the_networks_multiply_accumulates_come_from_its_model_file() -> None:
    # upconv_7: 3x3 convolutions 3-16-32-64-128-128-256 at the input's resolution, a 4x4 stride-2 deconvolution to 3.
    convolutions = 9 * (3 * 16 + 16 * 32 + 32 * 64 + 64 * 128 + 128 * 128 + 128 * 256)
    assert network_macs_per_output_pixel() == (convolutions + 16 * 256 * 3) / 4


def test_network_pixels_follow_the_engines_passes() -> None:
    assert network_output_pixels(1000, 872, 4096) == 2000 * 1744 + 4000 * 3488  # two passes
    assert network_output_pixels(1000, 872, 2048) == 2000 * 1744  # one pass, then a resize
    assert network_output_pixels(1000, 872, 1024) == 0  # no enlargement worth the network


def test_the_report_compares_the_configurations_round_by_round() -> None:
    def run(processes: int, seconds: float) -> dict[str, object]:
        return {
            "processes": processes,
            "images": 4,
            "seconds": seconds,
            "sr_cpu_seconds": 120.0,
            "stack_cpu_seconds": 130.0,
            "output_megapixels": 60.0,
            "most_images_at_once": processes,
            "completed": 4,
            "attempts_over_one": 0,
            "me_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0},
        }

    meta = {"images": 4, "batches": 2, "rounds": 2, "tier": "TIER_4K", "cpu_count": 2, "python": "3"}
    meta |= {"load_before": 1.0, "load_after": 2.0, "core_gmacs": 40.0, "macs_per_network_pixel": 138000.0}
    meta |= {"network_mp_per_output_mp": 1.2, "bound_cpu_s_per_output_mp": 4.14}
    runs = [run(1, 400.0), run(1, 440.0), run(2, 220.0), run(2, 200.0)]
    markdown = render({"meta": meta, "runs": runs})
    assert "**4.14 CPU-s per output MP** at best" in markdown
    assert "| 1 | 420.0 (400.0–440.0) | 105.0 (100.0–110.0) | 1 | 2.0 (2.0–2.0) | 0.48 (0.48–0.48) |" in markdown
    assert "SR_PROCESSES=2 over SR_PROCESSES=1, within each round: 0.5 (0.45–0.55)" in markdown


def test_images_at_once_come_from_the_jobs_start_and_finish_times() -> None:
    def job(started: str, finished: str) -> dict[str, object]:
        return {"startedAt": f"2026-01-01T00:00:{started}Z", "finishedAt": f"2026-01-01T00:00:{finished}Z"}

    one_after_another = [job("01", "05"), job("05", "09"), job("09", "12")]
    assert most_at_once(one_after_another) == 1  # a finish and the next start at the same moment: not together
    side_by_side = [job("01", "05"), job("02", "09"), job("06", "08")]
    assert most_at_once(side_by_side) == 2
