"""The finish: tone and colour only when the histogram calls for it, sharpening that cannot halo or clip,
and the JPEG chroma subsampling the picture can afford. Every step does nothing to a photo that needs nothing.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from imaging._decode import ChannelOrder

_HISTOGRAM_SAMPLES = 250_000

# Levels: per-channel 0.1 % percentiles, one stretch for all channels (keeps hue). A photo whose
# histogram already spans _LEVELS_FULL_SPAN levels is left alone; a hazy one is moved half way toward
# 0..255, with the gain capped.
_LEVELS_CLIP = 0.001
_LEVELS_FULL_SPAN = 192
_LEVELS_STRENGTH = 0.5
_LEVELS_MAX_GAIN = 1.2
_LEVELS_MIN_RANGE = 16

# Saturation +10 % only for dull pictures: mean chroma (max - min channel) below this many levels.
_SATURATION = 1.1
_DULL_CHROMA = 24.0
_LUMA = np.array([0.299, 0.587, 0.114])  # Rec. 601, the weights JPEG's YCbCr uses

# At most this fraction of the pixels may become clipped (within 3 levels of 0 or 255) by tone and colour;
# beyond it the adjustment is halved until it fits, then dropped.
CLIP_BUDGET = 0.001
_CLIP_MARGIN = 3
_CLIP_RETRIES = 3

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


def tone_and_colour(pixels: np.ndarray, order: ChannelOrder) -> np.ndarray:
    """Contrast-limited levels and, for dull pictures, +10 % saturation in one matrix pass to BGR (in place
    if writable). The adjustment is scaled back until it clips at most CLIP_BUDGET of the pixels."""
    sample = _sample(pixels)
    gain, offset = _levels(sample)
    saturation = _SATURATION if _is_dull(sample, order) else 1.0
    identity = _matrix(1.0, 0.0, 1.0, order)
    matrix = identity
    if (gain, offset, saturation) != (1.0, 0.0, 1.0):  # most photos: nothing to do, nothing to check
        matrix = _within_clip_budget(sample, _matrix(gain, offset, saturation, order), identity)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    in_place = channels == 3 and pixels.flags.writeable and pixels.flags.c_contiguous
    return cv2.transform(pixels, matrix, dst=pixels if in_place else None)


def _within_clip_budget(sample: np.ndarray, matrix: np.ndarray, identity: np.ndarray) -> np.ndarray:
    """The matrix, or the first of its halvings toward identity that clips at most CLIP_BUDGET, or identity."""
    for _ in range(_CLIP_RETRIES + 1):
        if _new_clipping(sample, matrix, identity) <= CLIP_BUDGET:
            return matrix
        matrix = (matrix + identity) / 2
    return identity


def _matrix(gain: float, offset: float, saturation: float, order: ChannelOrder) -> np.ndarray:
    """3x(c+1) matrix from the input channel order to BGR."""
    saturate = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), _LUMA)  # RGB->RGB
    if order == "L":
        mix = np.ones((3, 1))
    elif order == "BGR":
        mix = saturate[:, ::-1]
    else:
        mix = saturate
    return np.hstack([gain * mix[::-1], np.full((3, 1), offset)]).astype(np.float32)  # rows: B, G, R


def _unclipped(bgr: np.ndarray) -> np.ndarray:
    # 255 where every channel is more than _CLIP_MARGIN levels from either end (JPEG's own error takes a
    # pixel within the margin the rest of the way).
    return cv2.inRange(bgr, (_CLIP_MARGIN + 1,) * 3, (254 - _CLIP_MARGIN,) * 3)


def _new_clipping(sample: np.ndarray, matrix: np.ndarray, identity: np.ndarray) -> float:
    before = _unclipped(cv2.transform(sample, identity))
    after = _unclipped(cv2.transform(sample, matrix))
    return cv2.countNonZero(cv2.subtract(before, after)) / before.size


def _levels(sample: np.ndarray) -> tuple[float, float]:
    channels = 1 if sample.ndim == 2 else sample.shape[2]
    lows, highs = [], []
    for channel in range(channels):
        cdf = np.cumsum(cv2.calcHist([sample], [channel], None, [256], [0, 256]).ravel())
        lows.append(int(np.searchsorted(cdf, _LEVELS_CLIP * cdf[-1], side="right")))
        highs.append(int(np.searchsorted(cdf, (1.0 - _LEVELS_CLIP) * cdf[-1], side="left")))
    low, high = min(lows), max(highs)
    if high - low < _LEVELS_MIN_RANGE or high - low >= _LEVELS_FULL_SPAN:
        return 1.0, 0.0  # flat (stretching would amplify noise) or already using the range
    black = _LEVELS_STRENGTH * low
    white = 255.0 - _LEVELS_STRENGTH * (255.0 - high)
    gain = min(255.0 / (white - black), _LEVELS_MAX_GAIN)
    centre = (black + white) / 2.0
    return gain, 127.5 - gain * centre


def _is_dull(sample: np.ndarray, order: ChannelOrder) -> bool:
    if order == "L":
        return False
    channels = cv2.split(sample)
    chroma = cv2.subtract(cv2.max(cv2.max(*channels[:2]), channels[2]), cv2.min(cv2.min(*channels[:2]), channels[2]))
    return float(cv2.mean(chroma)[0]) < _DULL_CHROMA


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
