"""A disk cache for the network's output, so benchmark runs that only change the finish do not rerun it.

The key is a hash of the exact input pixels, the number of passes, the model and the noise level, so a cached
result is the one the network would compute. `install(folder)` wraps `imaging.sr.upscale` of whichever engine
a benchmark child imported (this tree's, or an older revision's); `cached(...)` wraps a function without
touching the module. Only for benchmarks: a cache hit makes no progress calls.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_FOLDER = Path(os.environ.get("ALBUM_ENHANCE_SR_CACHE", "/tmp/album-enhance-sr-cache"))

Upscale = Callable[[np.ndarray, int, Any, Callable[[], None]], np.ndarray]


def key(bgr: np.ndarray, passes: int, model: str, noise: int) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(bgr).data)
    digest.update(f"{bgr.shape}|{passes}|{model}|{noise}".encode())
    return digest.hexdigest()


def cached(upscale: Upscale, folder: Path) -> Upscale:
    """upscale, answered from folder when the same input was enlarged before."""
    folder.mkdir(parents=True, exist_ok=True)

    def lookup(bgr: np.ndarray, passes: int, config: Any, after_tile: Callable[[], None]) -> np.ndarray:
        path = folder / f"{key(bgr, passes, config.sr_model, config.sr_noise)}.npy"
        if path.exists():
            return np.asarray(np.load(path))
        out = upscale(bgr, passes, config, after_tile)
        partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(partial, out)
        partial.replace(path)  # atomic, so two processes never read half a file
        return out

    return lookup


def install(folder: Path = DEFAULT_FOLDER) -> None:
    """Replace imaging.sr.upscale with a cached version, in a benchmark child process."""
    from imaging import sr  # the engine under test, whichever revision is on the path

    sr.upscale = cached(sr.upscale, folder)  # type: ignore[assignment]
