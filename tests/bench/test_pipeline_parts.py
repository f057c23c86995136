"""The pipeline benchmark's building blocks, quickly, so `python -m bench.pipeline` does not rot."""

from urllib.parse import urlsplit

from bench.load import json_request, percentile, run_load
from bench.pipeline import CONCURRENT, SINGLE, render_markdown, summarise_batches, summarise_latency, verdicts
from tests.conftest import Harness
from tests.factories import make_user


def test_percentiles_are_observed_values() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert (percentile(samples, 0.5), percentile(samples, 0.99), percentile(samples, 1.0)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 0.99) == 7.0


async def test_the_load_generator_measures_a_live_api(direct_harness: Harness) -> None:
    user = make_user(direct_harness.engine)
    url = urlsplit(direct_harness.api.base_url)
    assert url.hostname is not None and url.port is not None
    me = json_request("GET", "/api/me", user.api_key)
    result = await run_load(url.hostname, url.port, clients=2, seconds=0.3, next_request=lambda _: me)
    assert result.requests > 0 and result.errors == 0 and result.status_counts == {"200": result.requests}
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    wrong = json_request("GET", "/api/me", "not-a-key")
    refused = await run_load(url.hostname, url.port, clients=1, seconds=0.1, next_request=lambda _: wrong)
    assert refused.errors == refused.requests > 0 and set(refused.status_counts) == {"401"}


def test_a_summary_is_rendered_with_its_targets() -> None:
    seconds = {"engine": [1.0, 1.1], "direct": [1.2, 1.3], "temporal": [1.5, 1.4]}
    cpu = {"engine": [100.0, 100.0], "direct": [105.0, 105.0], "temporal": [125.0, 125.0]}
    batches = summarise_batches(
        {SINGLE.name: seconds, CONCURRENT.name: seconds}, {SINGLE.name: cpu, CONCURRENT.name: cpu}
    )
    assert batches["derived"]["cpu_bound_fraction_5x20x2k"]["median"] == 0.8
    assert batches["derived"]["temporal_over_direct_20x1k"]["min"] == round(1.4 / 1.3, 2)
    row = {"p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 30.0, "requests_per_second": 100.0, "errors": 0}
    row |= {"generator_cpu_cores": 0.1, "api_cpu_cores": 0.9}
    starts = {"clients": 1, "starts_per_second": 50.0, "p50_ms": 5.0, "p99_ms": 9.0}
    latency = summarise_latency(
        {
            "enhance": {1: [row], 8: [row], 32: [row]},
            "me": {1: [row], 8: [row], 32: [row]},
            "workflow_start_only": {1: [starts], 32: [starts]},
            "enhance_worker_busy": {1: [row], 32: [row]},
            "me_worker_busy": {1: [row], 32: [row]},
        }
    )
    targets = verdicts(batches, latency)
    assert targets["enhance_p50_ms_1_client"] == {"measured": 10.0, "target": 30.0, "met": True}
    assert targets["fraction_of_ceiling_5x20x2k"]["met"] is False  # 1.0/1.5 and 1.1/1.4 of the ceiling
    assert targets["enhance_p99_ms_32_clients_worker_busy"] == {"measured": 30.0, "target": 1000.0, "met": True}
    meta = {"rounds": 2, "cpu_count": 2, "python": "3", "image_workers": 2}
    meta |= {"load_average_before": 1.0, "load_average_after": 2.0}
    money = {"users_checked": 3, "pipeline_jobs_completed": 40, "api_batches_charged": 5}
    summary = {"meta": meta, "batches": batches, "latency": latency, "targets": targets, "money": money}
    markdown = render_markdown(summary)
    assert "| 20x1K | 1.05 (1.0–1.1) | 1.25 (1.2–1.3) | 1.45 (1.4–1.5) |" in markdown
    assert "| enhance | 32 | 10.0 (10.0–10.0) |" in markdown and "| 32 | 50.0 (50.0–50.0) |" in markdown
    assert "| enhance_worker_busy | 32 | 10.0 (10.0–10.0) |" in markdown
    assert "noisy" in markdown and "balance = sum(ledger) held for all 3 users" in markdown
