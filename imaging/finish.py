"""The finish: the photo's own look kept, sharpening that cannot halo or clip, the network's slight tone
drift undone, and the JPEG chroma subsampling the picture can afford. Every step does nothing to a photo that
needs nothing.

No global tone or colour change is made. From a histogram alone a deliberate low-key, high-key, hazy or night
picture cannot be told from a badly exposed one, and a wrong global change (a dusk lifted, fog stretched, a
forest's shade brightened) is the one thing a user cannot undo; the exposure, white balance and saturation the
photographer chose are kept. See docs/imaging.md "Tone".
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from imaging._decode import ChannelOrder

_HISTOGRAM_SAMPLES = 250_000

# The network's tone drift: its output, shrunk back to the source's size, is a little darker than the source
# (mean luma -0.6 levels, up to -1.4). The low-frequency part of that difference is added back: a residual
# blurred at this radius (source pixels) corrects regional drift without reintroducing fine noise or blocks.
TONE_RESIDUAL_SIGMA = 2.0

# Where the source is flat (local standard deviation under this many levels: a smooth sky, a dusk gradient)
# the network has nothing to enlarge and can only invent grain; there the enlargement leans on bicubic,
# fully below 0 and not at all from this level up (chosen on the training photos: 1, 2 and 4 levels tried).
FLAT_SOURCE_LEVELS = 4.0
_BLEND_STRIP_ROWS = 64  # source rows per strip: the blend's float buffers stay small

# Sharpening: unsharp mask at output scale, soft-cored below the picture's noise level (grain and flat
# areas are left as they are) and clamped to each pixel's 3x3 neighbourhood range (no halo, no clipping).
USM_SIGMA = 1.0
_USM_AMOUNT = 0.5
_USM_STRIP_ROWS = 128  # a strip and its helpers stay in L2 cache; no second full-size buffer
_CORE_FACTOR = 1.5
_CORE_MIN, _CORE_MAX = 1, 6
_NEIGHBOURHOOD = np.ones((3, 3), np.uint8)

# 4:4:4 chroma for small outputs, where a 2x2 chroma block is a visible share of a detail, and for
# pictures with fine colour detail (small coloured stars, thin coloured lines) that 4:2:0 would wash out.
FULL_CHROMA_MAX_PIXELS = 1_200_000
_CHROMA_DETAIL_LEVELS = 12
_CHROMA_DETAIL_SHARE = 0.002
_CHROMA_SAMPLE_ROW_PAIRS = 128


def _sample(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    # Whole rows, so OpenCV reads the view in place (a column stride would force a copy).
    return pixels[:: max(1, height * width // _HISTOGRAM_SAMPLES)]


def to_bgr(pixels: np.ndarray, order: ChannelOrder) -> np.ndarray:
    """The pixels as BGR for the encoder, tone and colour unchanged (BGR input is returned as it is)."""
    if order == "BGR":
        return pixels
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR if order == "L" else cv2.COLOR_RGB2BGR)


def restore_source_tone(source: np.ndarray, enlarged: np.ndarray, sigma: float = TONE_RESIDUAL_SIGMA) -> None:
    """Add back, in place, the low-frequency difference between the source and the enlargement shrunk to
    the source's size (the network's slight darkening); detail finer than `sigma` source pixels is left to
    the network. Both are BGR; enlarged is an integer multiple of source in each dimension."""
    height, width = source.shape[:2]
    shrunk = cv2.resize(enlarged, (width, height), interpolation=cv2.INTER_AREA)
    residual = cv2.subtract(source, shrunk, dtype=cv2.CV_16S)
    residual = cv2.GaussianBlur(residual, (0, 0), sigma)
    # Biased into a byte (drift is a few levels; +-127 is far beyond it), enlarged, added with saturation.
    biased = np.clip(residual.astype(np.int32) + 128, 0, 255).astype(np.uint8)
    up = cv2.resize(biased, enlarged.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    cv2.addWeighted(enlarged, 1.0, up, 1.0, -128.0, dst=enlarged)


def smooth_flat_areas(source: np.ndarray, enlarged: np.ndarray, levels: float = FLAT_SOURCE_LEVELS) -> None:
    """In place: blend the network's enlargement toward a bicubic one where the source is flat, in
    proportion to how flat (3x3 standard deviation over `levels`). Both BGR; enlarged is an exact integer
    multiple of source. Works in strips of source rows, so no full-size float buffer exists."""
    height, width = source.shape[:2]
    scale = enlarged.shape[0] // height
    gray = cv2.cvtColor(source, cv2.COLOR_BGR2GRAY).astype(np.float32)
    mean = cv2.blur(gray, (3, 3))
    deviation = cv2.sqrt(cv2.max(cv2.blur(gray * gray, (3, 3)) - mean * mean, 0.0))
    weight = np.minimum(deviation / levels, 1.0)
    if float(weight.min()) >= 1.0:
        return  # no flat area: the network's output stands as it is (most photos)
    for top in range(0, height, _BLEND_STRIP_ROWS):
        bottom = min(height, top + _BLEND_STRIP_ROWS)
        low, high = max(0, top - 2), min(height, bottom + 2)  # bicubic needs 2 rows of context
        rows = slice((top - low) * scale, (bottom - low) * scale)
        size = (width * scale, (high - low) * scale)
        bicubic = cv2.resize(source[low:high], size, interpolation=cv2.INTER_CUBIC)[rows].astype(np.float32)
        trust = cv2.resize(weight[low:high], size, interpolation=cv2.INTER_LINEAR)[rows][..., None]
        strip = enlarged[top * scale : bottom * scale]
        blended = bicubic + trust * (strip.astype(np.float32) - bicubic)
        np.copyto(strip, np.clip(np.round(blended), 0, 255).astype(np.uint8))


def noise_threshold(pixels: np.ndarray) -> int:
    """Coring threshold in levels: a robust estimate of the grain's amplitude, from horizontal differences."""
    sample = _sample(pixels)
    gray = sample if sample.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(sample), cv2.COLOR_BGR2GRAY)
    differences = cv2.absdiff(gray[:, 1:], gray[:, :-1])
    cdf = np.cumsum(cv2.calcHist([differences], [0], None, [256], [0, 256]).ravel())
    # For Gaussian grain of std s, the median |difference| of neighbours is 0.954 s.
    sigma = float(np.searchsorted(cdf, cdf[-1] / 2)) / 0.954
    return int(min(_CORE_MAX, max(_CORE_MIN, round(_CORE_FACTOR * sigma))))


def sharpen_in_place(pixels: np.ndarray, sigma: float = USM_SIGMA, threshold: int | None = None) -> None:
    """Guarded unsharp mask (50 %) in row strips, writing into pixels; same result as a full-image pass."""
    if not pixels.flags.writeable or not pixels.flags.c_contiguous:
        raise ValueError("sharpen_in_place needs a writable, C-contiguous array")
    coring = _coring_table(noise_threshold(pixels) if threshold is None else threshold)
    height = pixels.shape[0]
    ksize = 2 * math.ceil(2.0 * sigma) + 1
    halo = max(ksize // 2, 1)
    pending: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # written one strip late
    for top in range(0, height, _USM_STRIP_ROWS):
        bottom = min(height, top + _USM_STRIP_ROWS)
        start, stop = max(0, top - halo), min(height, bottom + halo)
        # Rows above `top` are still original because the previous strip is written only after these reads.
        window = pixels[start:stop]
        blurred = cv2.GaussianBlur(window, (ksize, ksize), sigma)
        high = cv2.dilate(window, _NEIGHBOURHOOD)
        low = cv2.erode(window, _NEIGHBOURHOOD)
        if pending is not None:
            _sharpen(*pending, coring)
        rows = slice(top - start, bottom - start)
        pending = (pixels[top:bottom], blurred[rows], high[rows], low[rows])
    if pending is not None:
        _sharpen(*pending, coring)


def _coring_table(core: int) -> np.ndarray:
    """Lookup table on 128 + amount x detail: soft coring, so detail below `core` levels (grain) is left
    alone and only the excess above it is added."""
    scaled = np.arange(256, dtype=np.float64) - 128.0
    threshold = _USM_AMOUNT * core
    cored = np.sign(scaled) * np.maximum(np.abs(scaled) - threshold, 0.0)
    return np.clip(np.round(128.0 + cored), 0, 255).astype(np.uint8)


def _sharpen(strip: np.ndarray, blurred: np.ndarray, high: np.ndarray, low: np.ndarray, coring: np.ndarray) -> None:
    # amount x (strip - blurred), biased to 128 so it fits a byte; cored through the table; added back.
    detail = cv2.LUT(cv2.addWeighted(strip, _USM_AMOUNT, blurred, -_USM_AMOUNT, 128.0), coring)
    cv2.addWeighted(strip, 1.0, detail, 1.0, -128.0, dst=strip)
    # Clamped to the 3x3 range the pixel had: edges get steeper, never brighter or darker than their sides.
    cv2.min(strip, high, dst=strip)
    cv2.max(strip, low, dst=strip)


def wants_full_chroma(bgr: np.ndarray) -> bool:
    """Whether 4:2:0 would visibly lose colour: a small output, or fine colour detail found in row samples."""
    height, width = bgr.shape[:2]
    if bgr.ndim == 2:
        return False
    if height * width <= FULL_CHROMA_MAX_PIXELS or height < 2 or width < 2:
        return True
    step = max(2, (height // 2 // _CHROMA_SAMPLE_ROW_PAIRS) * 2)
    even_width = width - width % 2
    pairs = np.concatenate([bgr[top : top + 2, :even_width] for top in range(0, height - 1, step)])
    chroma = cv2.cvtColor(pairs, cv2.COLOR_BGR2YCrCb)
    # What 4:2:0 keeps: the 2x2 block mean of each chroma plane (row pairs stack, so blocks line up).
    kept = cv2.resize(
        cv2.resize(chroma, (even_width // 2, pairs.shape[0] // 2), interpolation=cv2.INTER_AREA),
        (even_width, pairs.shape[0]),
        interpolation=cv2.INTER_NEAREST,
    )
    error = cv2.absdiff(chroma, kept)
    lost = cv2.max(error[..., 1], error[..., 2]) > _CHROMA_DETAIL_LEVELS
    return float(np.count_nonzero(lost)) / lost.size > _CHROMA_DETAIL_SHARE
