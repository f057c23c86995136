"""Deterministic photo-like test images: sky, foliage-like fractal texture, objects, sensor grain."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

_SKY = np.array([95, 150, 220], np.float32)
_GROUND = np.array([80, 105, 55], np.float32)
_HORIZON = 0.4
_GRAIN_SIGMA = 6.0


def _fractal(rng: np.random.Generator, width: int, height: int, finest: int, exponent: float) -> np.ndarray:
    """Sum of upsampled noise octaves (finest cell size first), normalised to unit std."""
    texture = np.zeros((height, width), np.float32)
    cell = finest
    while cell < max(width, height) // 2:
        grid = rng.standard_normal((height // cell + 2, width // cell + 2), dtype=np.float32)
        texture += cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) * cell**exponent
        cell *= 2
    normalised: np.ndarray = texture / texture.std()
    return normalised


def photo_like(width: int, height: int, seed: int = 1) -> np.ndarray:
    """An RGB uint8 image with the detail and noise of a real photo (not flat colour), same for a seed."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    ground = np.clip((rows - _HORIZON) * 10.0, 0.0, 1.0)[..., None]
    image = (_SKY * (1.0 - ground) + _GROUND * ground) * np.ones((height, width, 1), np.float32)
    image += (_fractal(rng, width, height, 8, 1.0) * 12.0)[..., None] * (1.0 - ground)  # clouds
    foliage = _fractal(rng, width, height, 1, 0.0) * 45.0
    image += (foliage * ground[..., 0])[..., None] * np.array([1.0, 1.1, 0.8], np.float32)
    for _ in range(width * height // 40_000):
        colour = tuple(float(c) for c in rng.integers(20, 235, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(int(height * 0.35), height)))
        radius = int(rng.integers(width // 300 + 1, width // 40))
        cv2.circle(image, centre, radius, colour, -1, cv2.LINE_AA)
    shade = 1.0 + 0.25 * _fractal(rng, width, height, 1, 0.2)
    weight = 0.2 + 0.8 * ground
    image *= shade[..., None] * weight + (1.0 - weight)
    image += rng.standard_normal((height, width, 3), dtype=np.float32) * _GRAIN_SIGMA
    photo: np.ndarray = np.clip(image, 0, 255).astype(np.uint8)
    return photo


def photo_like_jpeg(width: int, height: int, seed: int = 1, quality: int = 90) -> bytes:
    """photo_like encoded as a baseline JPEG (Pillow, 4:2:0)."""
    out = io.BytesIO()
    Image.fromarray(photo_like(width, height, seed)).save(out, "JPEG", quality=quality)
    return out.getvalue()
