"""Reading the source before restoring it: JPEG quality from the quantisation tables, noise from flat areas,
and from both the network's denoising level (waifu2x's noise0..noise3 models) for each image.

A clean source (no JPEG, or a near-lossless one, and no visible noise) gets the configured level (SR_NOISE,
-1 by default: the same network as before). The bands were chosen on the benchmark's training photos only;
see docs/imaging.md "Restoration".
"""

from __future__ import annotations

import io
import math
from functools import cache

import cv2
import numpy as np
from PIL import Image

from imaging._source import DECODE_ERRORS

# The IJG (libjpeg) base luminance table; quality q scales it by 5000/q (q < 50) or 200 - 2q (percent).
_IJG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)

# JPEG quality bands -> waifu2x noise level (upper bounds inclusive), from the training photos: level 0
# removes the faint ringing of q~90 (+0.5 dB at 2x), stronger levels pay off as quality drops; at 96 and
# above a JPEG is as good as clean and the plain network is kept.
CLEAN_JPEG_QUALITY = 96
_QUALITY_BANDS = ((70, 3), (84, 2), (95, 0))

# Noise: sigma (levels) of the colour (CrCb) noise in the flattest quarter of 16-px blocks. Sensor noise is
# largely independent per channel, so it shows in the chroma planes, where a clean photo (and any JPEG, whose
# chroma is smooth) measures under 0.55 on the training photos and a noisy one over 1.1; luma cannot tell grain
# from fine texture (foliage, lettering) as well. Above the threshold the mildest denoising level is used.
NOISY_SIGMA = 0.8
_BLOCK = 16
_FLAT_SHARE = 0.25
# Immerkaer (1996): for Gaussian noise, E|I * M| = sigma * sqrt(2/pi) * 6 with this 3x3 mask.
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_IMMERKAER_SCALE = math.sqrt(math.pi / 2.0) / 6.0


@cache
def _ijg_sums() -> np.ndarray:
    base = np.array(_IJG_LUMA, np.int64)
    sums = []
    for quality in range(1, 101):
        scale = 5000 // quality if quality < 50 else 200 - 2 * quality
        sums.append(np.clip((base * scale + 50) // 100, 1, 255).sum())
    return np.array(sums)


def jpeg_quality(data: bytes) -> int | None:
    """The IJG-equivalent quality (1..100) of a JPEG's luminance quantisation table, read from the header
    (nothing is decoded); None for other formats or a JPEG without tables. Tables that are not scaled IJG
    tables (many cameras) get the quality whose table quantises as coarsely overall (same sum)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            tables = getattr(image, "quantization", None)
    except DECODE_ERRORS:
        return None
    if not tables or 0 not in tables:
        return None
    total = int(np.sum(tables[0]))
    return int(np.argmin(np.abs(_ijg_sums() - total))) + 1


def noise_sigma(bgr: np.ndarray) -> float:
    """Standard deviation of the colour noise in levels (the larger of Cr and Cb), measured where the picture
    is flattest: Immerkaer's estimator per 16-px block, median of the flattest quarter. 0 for gray images."""
    if bgr.ndim == 2:
        return 0.0
    ycrcb = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
    return max(_flat_sigma(ycrcb[..., channel]) for channel in (1, 2))


def _flat_sigma(plane: np.ndarray) -> float:
    response = np.abs(cv2.filter2D(plane.astype(np.float32), -1, _IMMERKAER, borderType=cv2.BORDER_REFLECT))
    blocks_y, blocks_x = response.shape[0] // _BLOCK, response.shape[1] // _BLOCK
    if blocks_y == 0 or blocks_x == 0:
        return float(response.mean() * _IMMERKAER_SCALE)
    blocks = response[: blocks_y * _BLOCK, : blocks_x * _BLOCK].reshape(blocks_y, _BLOCK, blocks_x, _BLOCK)
    per_block = np.sort(blocks.mean(axis=(1, 3)).ravel())
    flattest = per_block[: max(1, int(per_block.size * _FLAT_SHARE))]
    return float(np.median(flattest) * _IMMERKAER_SCALE)


def sr_noise_level(quality: int | None, sigma: float, configured: int) -> int:
    """The network's denoising level for a source: the configured one for a clean source, else the level
    its JPEG quality or its noise calls for (never below the configured one)."""
    level = -1
    if quality is not None and quality < CLEAN_JPEG_QUALITY:
        level = next(level for bound, level in _QUALITY_BANDS if quality <= bound)
    if sigma > NOISY_SIGMA:
        level = max(level, 0)
    return max(level, configured)
