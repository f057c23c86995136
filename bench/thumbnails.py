"""Memory of first-time thumbnails: `python -m bench.thumbnails` (about a minute).

One API replica (uvicorn in a subprocess, direct mode, default settings, SQLite in a temporary folder) holds 16
images whose originals are 59.99 MP PNGs. 16 clients ask for the thumbnail of a different image each, all at once,
as an album grid does on first view; a client answered 503 (every decode slot busy for UPLOAD_DECODE_WAIT_SECONDS)
retries after its Retry-After, as the web app does. The API's resident memory is sampled every 50 ms throughout.
Then the same 16 thumbnails again (stored: no decode).

Writes bench/results/thumbnails.json and bench/results/thumbnails.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.api import Connection, free_port, raw_request, rss_mb
from bench.hostile import black_png
from core.config import Settings
from core.temporal_dev import wait_for_port
from db import migrate
from db.models import Album, Image
from db.session import make_engine, session_scope
from services.users import create_user
from storage.local import LocalStorage, original_key

RESULTS = Path(__file__).parent / "results"
IMAGES = 16
SIZE = (7745, 7745)  # 59.99 MP


def seed(database_url: str, storage: LocalStorage) -> tuple[str, list[str]]:
    """A user and an album of IMAGES 59.99 MP PNGs: (API key, image ids)."""
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    png = black_png(*SIZE)
    with session_scope(engine) as session:
        user, key = create_user(session, "bench@example.com", 0, "bench:grant")
        album = Album(owner_id=user.id, name="huge")
        session.add(album)
        session.flush()
        ids = []
        for position in range(IMAGES):
            image = Image(album_id=album.id, original_key="", width=SIZE[0], height=SIZE[1], format="PNG", size_bytes=0)
            image.original_key = original_key(album.id, image.id, "PNG")
            image.size_bytes, image.sort_order = len(png), position
            storage.put(image.original_key, png)
            session.add(image)
            ids.append(image.id)
    engine.dispose()
    return key, ids


async def fetch(port: int, key: str, image_id: str) -> tuple[float, list[int]]:
    """One client's thumbnail, retried after each 503: (seconds to the image, statuses seen)."""
    connection = Connection(port)
    started, statuses = time.perf_counter(), []
    while True:
        status, _body = await connection.exchange(raw_request("GET", f"/api/images/{image_id}/thumbnail", key))
        statuses.append(status)
        if status != 503:
            break
        await asyncio.sleep(1)
    connection.close()
    return time.perf_counter() - started, statuses


async def run(port: int, pid: int, key: str, ids: list[str]) -> dict[str, Any]:
    peak = rss_mb(pid)
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.05)

    report: dict[str, Any] = {"rss_before_mb": round(rss_mb(pid), 1)}
    sampler = asyncio.create_task(sample())
    for label in ("first time", "stored"):
        began = time.perf_counter()
        results = await asyncio.gather(*(fetch(port, key, image_id) for image_id in ids))
        report[label] = {
            "wall_s": round(time.perf_counter() - began, 2),
            "slowest_s": round(max(seconds for seconds, _ in results), 2),
            "statuses": dict(Counter(str(status) for _, statuses in results for status in statuses)),
            "peak_rss_mb": round(peak, 1),
        }
        print(label, report[label], flush=True)
    done.set()
    await sampler
    report["rss_after_mb"] = round(rss_mb(pid), 1)
    return report


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# First-time thumbnails of 59.99 MP PNGs",
        "",
        f"`python -m bench.thumbnails`, {report['date']}, {report['machine']}. One replica (direct mode, SQLite), "
        f"UPLOAD_DECODE_SLOTS {s['upload_decode_slots']}, UPLOAD_DECODE_WAIT_SECONDS {s['upload_decode_wait_seconds']}"
        f"; {IMAGES} clients at once, one image each, retrying a 503 after 1 s.",
        "",
        "| round | wall s | slowest client s | answers | API peak RSS MB |",
        "|---|---:|---:|---|---:|",
    ]
    for label in ("first time", "stored"):
        r = report["result"][label]
        answers = ", ".join(f"{status}×{count}" for status, count in sorted(r["statuses"].items()))
        lines.append(f"| {label} | {r['wall_s']} | {r['slowest_s']} | {answers} | {r['peak_rss_mb']} |")
    lines += [
        "",
        f"API RSS before: {report['result']['rss_before_mb']} MB; after: {report['result']['rss_after_mb']} MB.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="bench-thumbnails-") as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        storage_dir = Path(tmp) / "storage"
        key, ids = seed(database_url, LocalStorage(storage_dir))
        port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url, "STORAGE_DIR": str(storage_dir), "EXECUTION_MODE": "direct"}
        command = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
        api = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parent.parent)
        try:
            wait_for_port("127.0.0.1", port)
            result = asyncio.run(run(port, api.pid, key, ids))
        finally:
            api.terminate()
            api.wait(timeout=20)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "settings": {
            "upload_decode_slots": settings.upload_decode_slots,
            "upload_decode_wait_seconds": settings.upload_decode_wait_seconds,
        },
        "result": result,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "thumbnails.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "thumbnails.md").write_text(markdown(report))
    print(markdown(report))
    other_5xx = sum(
        count
        for r in (result["first time"], result["stored"])
        for s, count in r["statuses"].items()
        if s.startswith("5") and s != "503"
    )
    return 1 if other_5xx else 0


if __name__ == "__main__":
    sys.exit(main())
