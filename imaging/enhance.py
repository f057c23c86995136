"""The enhancement engine: original photo bytes in, tier-sized sRGB JPEG out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imaging import _pixels
from imaging._decode import decode, fit_long_side
from imaging._source import DEFAULT_MAX_PIXELS, oriented

TIER_SIZES: dict[str, int] = {"TIER_1K": 1024, "TIER_2K": 2048, "TIER_4K": 4096}

_MAX_LONG_SIDE = 16_384  # JPEG's own limit is 65 535; nothing we sell is near this
_MIN_SOURCE_USM_SIGMA = 0.6  # below this a Gaussian is too coarsely sampled to stand in for the output one


@dataclass(frozen=True)
class EnhancedImage:
    """An encoded output image; len(data) is its size in bytes."""

    data: bytes
    width: int
    height: int
    format: str = "JPEG"


def enhance_image(data: bytes, long_side: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> EnhancedImage:
    """Decode, orient, colour-manage, resize to long_side, enhance and encode as JPEG; thread-safe, no I/O."""
    if isinstance(long_side, bool) or not isinstance(long_side, int) or not 1 <= long_side <= _MAX_LONG_SIDE:
        raise ValueError(f"long_side must be an integer in 1..{_MAX_LONG_SIDE}, got {long_side!r}")
    source = decode(data, max_pixels, long_side)
    pixels, order, icc, orientation = source.pixels, source.order, source.icc, source.orientation
    # Work in stored (unrotated) coordinates until orienting: the long side does not depend on rotation.
    stored_target = fit_long_side(source.stored_size, long_side)
    del source  # each full-size buffer must be freed as soon as the next one exists: peak RSS per worker
    output_size = oriented(stored_target, orientation)
    # Pointwise colour work and rotation run on whichever is smaller, the decoded source or the output.
    shrinking = pixels.shape[0] * pixels.shape[1] > output_size[0] * output_size[1]
    if shrinking:
        pixels = _pixels.resize(pixels, stored_target)
    pixels, order = _pixels.to_srgb(pixels, order, icc)
    pixels = _pixels.orient(_pixels.tone_and_colour(pixels, order), orientation)
    if not shrinking:
        pixels = _sharpen_and_enlarge(pixels, output_size)
    else:
        _pixels.unsharp_in_place(pixels)
    return EnhancedImage(data=_pixels.encode_jpeg(pixels), width=output_size[0], height=output_size[1])


def _sharpen_and_enlarge(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Blur and interpolation commute, so the output-scale unsharp mask can run on the smaller source with
    # its radius scaled down, as long as that radius is still well sampled there.
    source_sigma = _pixels.USM_SIGMA * pixels.shape[0] / size[1]
    if source_sigma >= _MIN_SOURCE_USM_SIGMA:
        _pixels.unsharp_in_place(pixels, source_sigma)
        return _pixels.resize(pixels, size)
    pixels = _pixels.resize(pixels, size)
    _pixels.unsharp_in_place(pixels)
    return pixels
