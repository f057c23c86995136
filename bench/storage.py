"""Benchmark of uploads and downloads through the API on local disk and on an S3-compatible store:
`python -m bench.storage`.

Each run starts a fresh API process (`album-enhance api`, SQLite) so its peak RSS (VmHWM) belongs to that run alone,
uploads one warm-up photo, then FILES photos in one request, then reads every original back (streamed from local
disk; on S3 by following the presigned-URL redirect). Runs of the two backends are interleaved. The S3 store is
moto's standalone server (the one the tests use), so S3 timings show the client path, not a real network.
Results go to bench/results/storage.json and storage.md.
"""

from __future__ import annotations

import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
from PIL import Image

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
FILES = 20
RUNS = 3
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class Run:
    backend: str
    upload_seconds: float
    download_seconds: float
    rss_growth_mb: float  # peak RSS during the upload minus peak RSS after the warm-up


def noisy_jpeg(seed: int) -> bytes:
    """A 2000x1500 noise JPEG (about 3.5 MB): incompressible, so sizes are what they claim."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(1500, 2000, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@contextmanager
def s3_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def service_env(tmp: Path, backend: str, endpoint: str) -> dict[str, str]:
    env = {**os.environ, **S3_CREDENTIALS, "PYTHONPATH": str(PROJECT_ROOT)}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp / 'bench.db'}",
        STORAGE_DIR=str(tmp / "storage"),
        EXECUTION_MODE="direct",
        API_HOST="127.0.0.1",
        API_PORT=str(free_port()),
        RATE_LIMIT_ENABLED="false",
    )
    if backend == "s3":
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket=bucket)
        env.update(STORAGE_URL=f"s3://{bucket}/bench", STORAGE_ENDPOINT_URL=endpoint)
    return env


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def one_run(backend: str, endpoint: str, photos: list[bytes]) -> Run:
    with tempfile.TemporaryDirectory() as tmp_dir:
        env = service_env(Path(tmp_dir), backend, endpoint)
        cli(env, "db", "upgrade")
        headers = {"Authorization": f"Bearer {cli(env, 'users', 'create', 'bench@example.com')}"}
        api = subprocess.Popen(
            [sys.executable, "-m", "cli", "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            base = f"http://127.0.0.1:{env['API_PORT']}"
            wait_http(f"{base}/healthz", api)
            with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
                album = http.post("/api/albums", json={"name": "bench"}).json()["id"]
                warm = http.post(f"/api/albums/{album}/images", files=[("files", ("w.jpg", photos[0], "image/jpeg"))])
                warm.raise_for_status()
                baseline = peak_rss_mb(api.pid)
                files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
                started = time.perf_counter()
                uploaded = http.post(f"/api/albums/{album}/images", files=files)
                upload_seconds = time.perf_counter() - started
                uploaded.raise_for_status()
                growth = peak_rss_mb(api.pid) - baseline
                started = time.perf_counter()
                for image in uploaded.json()["images"]:
                    original = http.get(f"/api/images/{image['id']}/original", follow_redirects=True)
                    assert original.status_code == 200 and len(original.content) == image["sizeBytes"]
                download_seconds = time.perf_counter() - started
        finally:
            api.terminate()
            api.wait(30)
    return Run(backend, upload_seconds, download_seconds, growth)


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def render(runs: list[Run], upload_mb: float) -> str:
    lines = [
        "# Uploads and downloads through the API, local disk vs S3-compatible store",
        "",
        f"`python -m bench.storage` on {platform.machine()}, {os.cpu_count()} cores (shared machine), Python "
        f"{platform.python_version()}. Each run: a fresh API process, {FILES} noise JPEGs of 2000x1500 "
        f"({upload_mb:.0f} MB in all) in one upload request, then every original read back. {RUNS} runs per "
        "backend, interleaved; min / median / max. The S3 store is moto's server on the same machine.",
        "",
        "| backend | upload s | upload MB/s (median) | read-back s | peak RSS growth during the upload, MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for backend in ("local", "s3"):
        mine = [r for r in runs if r.backend == backend]
        uploads = [r.upload_seconds for r in mine]
        lines.append(
            f"| {backend} | {spread(uploads)} | {upload_mb / statistics.median(uploads):.1f} | "
            f"{spread([r.download_seconds for r in mine])} | {spread([r.rss_growth_mb for r in mine])} |"
        )
    lines += [
        "",
        f"The API's peak memory grows by far less than the {upload_mb:.0f} MB uploaded: files are checked one at a "
        "time and copied to storage from their spooled upload files in chunks (S3: multipart above 8 MiB), never "
        "all held at once.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    photos = [noisy_jpeg(seed) for seed in range(FILES)]
    upload_mb = sum(len(p) for p in photos) / 1e6
    runs: list[Run] = []
    with s3_server() as endpoint:
        for _ in range(RUNS):
            for backend in ("local", "s3"):
                runs.append(one_run(backend, endpoint, photos))
                print(runs[-1], flush=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    payload: dict[str, Any] = {"files": FILES, "upload_mb": upload_mb, "runs": [asdict(r) for r in runs]}
    (RESULTS_DIR / "storage.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS_DIR / "storage.md").write_text(render(runs, upload_mb))
    print(render(runs, upload_mb))


if __name__ == "__main__":
    main()
