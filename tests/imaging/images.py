"""Small test images generated in code, and helpers to read pixels back from encoded output."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
# Top-left, top-right, bottom-left, bottom-right: all saturated primaries or neutral, which the gentle
# enhancement leaves unchanged, and together they span 0..255 in every channel (auto-levels is a no-op).
QUADRANT_COLOURS = (RED, GREEN, BLUE, WHITE)
QUADRANT_CENTRES = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))

EXIF_ORIENTATION = 0x0112


def quadrants(width: int = 90, height: int = 60) -> np.ndarray:
    """An RGB image with four flat quadrants in QUADRANT_COLOURS."""
    image = np.empty((height, width, 3), np.uint8)
    half_w, half_h = width // 2, height // 2
    image[:half_h, :half_w] = RED
    image[:half_h, half_w:] = GREEN
    image[half_h:, :half_w] = BLUE
    image[half_h:, half_w:] = WHITE
    return image


def encode(pixels: np.ndarray | Image.Image, fmt: str, **options: Any) -> bytes:
    """Encode with Pillow (and pillow-heif for HEIF)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def with_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    """A JPEG of pixels (as stored) carrying an EXIF orientation tag."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(pixels, "JPEG", quality=95, exif=exif.tobytes())


def decoded(data: bytes) -> np.ndarray:
    """Decode an output image to an RGB array."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def colour_at(pixels: np.ndarray, fx: float, fy: float, radius: int = 2) -> tuple[int, ...]:
    """Mean colour of a small window centred at fractional position (fx, fy)."""
    height, width = pixels.shape[:2]
    x, y = int(fx * width), int(fy * height)
    window = pixels[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
    return tuple(int(round(v)) for v in window.reshape(-1, window.shape[-1]).mean(axis=0))


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int) -> bool:
    """Every channel within tolerance."""
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb's header)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small valid JPEG whose SOF header is rewritten to declare width x height."""
    data = bytearray(encode(quadrants(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
