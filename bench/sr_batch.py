"""A 20-image TIER_4K batch of 1000-px photos through a running service (e.g. `make dev`), with the
super-resolution engine: how long it takes, and the tile positions seen while it runs.

    .venv/bin/python -m bench.sr_batch --api http://127.0.0.1:8000 --key "$KEY"

The key's user needs 200 tokens. Writes bench/results/sr_batch.md.
"""

import argparse
import io
import time
from pathlib import Path

import httpx
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "photos"
RESULTS = Path(__file__).resolve().parent / "results" / "sr_batch.md"
SOURCES = ("hubble_deep_field.jpg", "retina.jpg", "astronaut.png", "coffee.png")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.key}"}
    with httpx.Client(base_url=args.api, headers=headers, timeout=120) as http:
        album = http.post("/api/albums", json={"name": "SR batch"}).json()["id"]
        files = [("files", (f"p{n}.jpg", data, "image/jpeg")) for n, data in enumerate(thousand_px_photos(args.images))]
        http.post(f"/api/albums/{album}/images", files=files).raise_for_status()
        started = time.monotonic()
        enhanced = http.post(f"/api/albums/{album}/enhance", json={"tier": "TIER_4K"})
        enhanced.raise_for_status()
        batch_id = enhanced.json()["batchId"]
        steps: list[str] = []
        finished_at: dict[str, float] = {}
        while True:
            batch = http.get(f"/api/batches/{batch_id}").json()
            for job in batch["jobs"]:
                if job["progress"] and (not steps or steps[-1] != job["progress"]):
                    steps.append(job["progress"])
                if job["status"] == "COMPLETED" and job["id"] not in finished_at:
                    finished_at[job["id"]] = time.monotonic() - started
            if batch["status"] in ("COMPLETED", "CANCELLED", "FAILED"):
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
    lines = [
        "# A 20-image TIER_4K batch of 1000-px photos, super-resolution engine",
        "",
        "`python -m bench.sr_batch` against `make dev` (one worker process, `SR_WORKERS=1`, 2 shared cores).",
        "",
        f"- batch {batch['status']}: {batch['completed']} completed, {batch['failed']} failed, "
        f"{batch['cancelled']} cancelled, in {elapsed:.0f} s ({elapsed / max(1, batch['completed']):.1f} s per image)",
        f"- output size of each image: {sorted({(j['enhancedWidth'], j['enhancedHeight']) for j in batch['jobs']})}",
        f"- distinct tile positions seen on the jobs while it ran: {len(steps)} (first: {steps[:3]}, "
        f"last: {steps[-3:]})",
        "- completion times (s): " + ", ".join(f"{t:.0f}" for t in sorted(finished_at.values())),
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
