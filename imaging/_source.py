"""Opening untrusted image bytes: format allow-list, pixel limit before decoding, EXIF orientation."""

from __future__ import annotations

import io
import re
import struct
import zlib
from functools import cache

from PIL import Image, UnidentifiedImageError

from imaging.errors import InvalidImageError

DEFAULT_MAX_PIXELS = 60_000_000

# Pillow plugin ids we accept; MPO (multi-picture JPEG from many cameras) is opened by the JPEG plugin.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF", "HEIF")
_FORMAT_ALIASES = {"MPO": "JPEG"}

# What Pillow and its plugins raise on malformed data. Anything else (MemoryError included) is not the
# file's fault and propagates, so the job is retried rather than refunded as a bad image.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    RuntimeError,  # libheif decoding failures
)

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")

# EXIF orientations 5-8 swap width and height.
_TRANSPOSING = frozenset({5, 6, 7, 8})


@cache
def _available_formats() -> tuple[str, ...]:
    # An older Pillow without AVIF must not turn every upload into a KeyError.
    Image.init()
    return tuple(f for f in SUPPORTED_FORMATS if f in Image.OPEN)


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Identify the image and check its declared size; nothing is decoded yet."""
    if not data:
        raise InvalidImageError("The file is empty")
    try:
        image = Image.open(io.BytesIO(data), formats=_available_formats())
    except UnidentifiedImageError:
        raise InvalidImageError(
            f"Unsupported or unrecognised image format (supported: {', '.join(SUPPORTED_FORMATS)}), or a damaged file"
        ) from None
    except Image.DecompressionBombError as exc:
        # Pillow refuses beyond twice its own limit before we get to look at the size.
        match = _BOMB_PIXELS.search(str(exc))
        declared = int(match.group(1)) if match else None
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise _too_many_pixels(declared, limit) from None
    except DECODE_ERRORS as exc:
        raise InvalidImageError(f"Corrupt image header: {exc}") from None
    check_pixels(image.size, max_pixels)
    return image


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse empty images and images declaring more than max_pixels pixels."""
    width, height = size
    if width < 1 or height < 1:
        raise InvalidImageError(f"Image declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise _too_many_pixels(width * height, max_pixels)


def _too_many_pixels(declared: int | None, limit: int) -> InvalidImageError:
    what = f"{declared} pixels" if declared is not None else "too many pixels"
    return InvalidImageError(f"Image declares {what}; the limit is {limit}")


def format_name(image: Image.Image) -> str:
    """Upper-case container format name as reported to callers (MPO is reported as JPEG)."""
    name = (image.format or "").upper()
    return _FORMAT_ALIASES.get(name, name)


def exif_orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8; 1 when absent or invalid (HEIF decoders already apply it and report 1)."""
    try:
        value = image.getexif().get(0x0112, 1)
    except DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def oriented(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """Size as displayed once the EXIF orientation is applied."""
    return (size[1], size[0]) if orientation in _TRANSPOSING else size


def transposes(orientation: int) -> bool:
    """Whether the orientation swaps width and height."""
    return orientation in _TRANSPOSING
