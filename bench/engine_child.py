"""Runs an engine in a benchmark child process: this tree's, or the `imaging/` of an older revision.

`python -c` starts it (not multiprocessing, whose spawned children import the parent's main module, and with
it this tree's engine, before anything else): the chosen engine's folder goes in front of the path first, then
the network is wrapped with the disk cache (bench.srcache), then the calls in a pickle file are run.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any


def command(engine_path: Path | None, calls_file: Path, outputs_file: Path, cache: Path) -> list[str]:
    """The child's command line."""
    path = repr(str(engine_path)) if engine_path else "None"
    code = (
        "import sys\n"
        f"engine = {path}\n"
        "if engine: sys.path.insert(0, engine)\n"
        "from bench import engine_child\n"
        f"engine_child.serve({str(calls_file)!r}, {str(outputs_file)!r}, {str(cache)!r})\n"
    )
    return [sys.executable, "-c", code]


def serve(calls_file: str, outputs_file: str, cache: str) -> None:
    """Run every (data, long_side, super_resolution) call of the file; write the encoded outputs."""
    import imaging
    from bench import srcache

    srcache.install(Path(cache))
    calls: list[tuple[bytes, int, bool]] = pickle.loads(Path(calls_file).read_bytes())
    outputs = []
    for data, long_side, super_resolution in calls:
        config: Any = imaging.EngineConfig(engine="sr") if super_resolution else None
        outputs.append(bytes(imaging.enhance_image(data, long_side, config=config).data))
    Path(outputs_file).write_bytes(pickle.dumps((imaging.__file__, outputs)))
