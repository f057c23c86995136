"""What carrying the metadata over costs per image: `python -m bench.metadata`.

Two measurements, written to bench/results/metadata.json and metadata.md:
- the metadata step alone (open the source's header, read EXIF/XMP/IPTC, rewrite them, build the JPEG segments),
  the median of many runs, for the phone photo of the tests (full EXIF, XMP, IPTC) and for a 12 MP JPEG carrying
  the same blocks;
- a whole 1K enhancement of the phone photo with and without it (interleaved runs, medians and their difference),
  to show the step is all it adds (the pixels and their encoding are the same: tests/imaging/test_metadata.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import PIL

from bench.photos import photo_like_jpeg
from imaging import Output, enhance_image
from imaging._source import open_image
from imaging.metadata import carry_over, jpeg_segments, read_metadata

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PHONE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "metadata" / "phone.jpg"
BUDGET_MS = 5.0


def metadata_step(data: bytes, size: tuple[int, int]) -> int:
    """What the engine does for metadata, end to end, minus the pixels: the bytes of segments it writes."""
    carried = carry_over(read_metadata(open_image(data)), size, keep_location=False)
    return sum(len(segment) for segment in jpeg_segments(carried))


def with_phone_metadata(jpeg: bytes) -> bytes:
    """A JPEG with the phone photo's APP1 (EXIF, XMP) and APP13 (IPTC) segments spliced in after SOI."""
    phone = PHONE.read_bytes()
    position, segments = 2, []
    while phone[position] == 0xFF and phone[position + 1] != 0xDA:
        length = int.from_bytes(phone[position + 2 : position + 4], "big")
        if phone[position + 1] in (0xE1, 0xED):
            segments.append(phone[position : position + 2 + length])
        position += 2 + length
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(repeats: int, enhance_repeats: int) -> dict[str, Any]:
    phone = PHONE.read_bytes()
    camera = with_phone_metadata(photo_like_jpeg(4000, 3000))
    step = {
        "phone photo (300x451, EXIF+XMP+IPTC)": median_ms(lambda: metadata_step(phone, (1024, 681)), repeats),
        "12 MP JPEG with the same blocks": median_ms(lambda: metadata_step(camera, (1024, 768)), repeats),
    }
    with_metadata, without = [], []
    for _ in range(enhance_repeats):  # interleaved, so load on the machine hits both alike
        with_metadata.append(median_ms(lambda: enhance_image(phone, 1024), 1))
        without.append(median_ms(lambda: enhance_image(phone, 1024, output=Output(metadata=False)), 1))
    whole = {
        "with metadata": statistics.median(with_metadata),
        "without": statistics.median(without),
    }
    whole["difference"] = whole["with metadata"] - whole["without"]
    return {
        "budget_ms": BUDGET_MS,
        "metadata_step_ms": step,
        "enhance_1k_phone_ms": whole,
        "repeats": repeats,
        "enhance_repeats": enhance_repeats,
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "machine": platform.machine(),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Metadata cost per image",
        "",
        f"`python -m bench.metadata` ({results['repeats']} runs per row, medians; Python {results['python']}, "
        f"Pillow {results['pillow']}). Budget: {results['budget_ms']:g} ms per image.",
        "",
        "| what | median ms |",
        "|---|---|",
    ]
    for name, value in results["metadata_step_ms"].items():
        lines.append(f"| metadata step, {name} | {value:.2f} |")
    whole = results["enhance_1k_phone_ms"]
    lines += [
        "",
        f"A whole 1K enhancement of the phone photo ({results['enhance_repeats']} interleaved runs each): "
        f"{whole['with metadata']:.1f} ms with metadata, {whole['without']:.1f} ms without "
        f"(difference {whole['difference']:+.1f} ms, within the run-to-run noise of a shared machine).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--enhance-repeats", type=int, default=15)
    args = parser.parse_args()
    results = measure(args.repeats, args.enhance_repeats)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "metadata.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / "metadata.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
