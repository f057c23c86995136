"""A disk cache for the network's output, so benchmark runs that only change the finish do not rerun it.

`install(folder)` wraps `imaging.sr.upscale` of whichever engine is imported (this tree's, or an older
revision's in a child process): the key is a hash of the exact input pixels, the number of passes, the
model and the noise level, so a cached result is the one the network would compute. Only for benchmarks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_FOLDER = Path(os.environ.get("ALBUM_ENHANCE_SR_CACHE", "/tmp/album-enhance-sr-cache"))


def key(bgr: np.ndarray, passes: int, model: str, noise: int) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(bgr).data)
    digest.update(f"{bgr.shape}|{passes}|{model}|{noise}".encode())
    return digest.hexdigest()


def install(folder: Path = DEFAULT_FOLDER) -> None:
    """Replace imaging.sr.upscale with a cached version (idempotent)."""
    from imaging import sr  # the engine under test, whichever revision is on the path

    if getattr(sr.upscale, "cached", False):
        return
    folder.mkdir(parents=True, exist_ok=True)
    original: Callable[..., np.ndarray] = sr.upscale

    def upscale(bgr: np.ndarray, passes: int, config: Any, after_tile: Callable[[], None]) -> np.ndarray:
        path = folder / f"{key(bgr, passes, config.sr_model, config.sr_noise)}.npy"
        if path.exists():
            return np.load(path)
        out = original(bgr, passes, config, after_tile)
        partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(partial, out)
        partial.replace(path)  # atomic, so two processes never read half a file
        return out

    upscale.cached = True  # type: ignore[attr-defined]
    sr.upscale = upscale  # type: ignore[assignment]
