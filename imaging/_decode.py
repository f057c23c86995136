"""Decoding untrusted bytes to 8-bit pixels: fast OpenCV path for JPEG, Pillow for everything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from imaging._source import DECODE_ERRORS, exif_orientation, format_name, open_image
from imaging.colour import convert_image_to_srgb, source_profile
from imaging.errors import InvalidImageError
from imaging.metadata import SourceMetadata, read_metadata

ChannelOrder = Literal["RGB", "BGR", "L"]

_JPEG_SCALES = (8, 4, 2, 1)
_EOI_SEARCH_BYTES = 1 << 16
_CV_COLOUR_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_CV_GRAY_FLAGS = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
_BAND_ROWS = 256  # source rows per conversion band: ~10 MB at 60 MP
_ALPHA_MODES = frozenset({"PA", "RGBA", "RGBa", "LA", "La"})
_HIGH_BIT_DEPTH_SCALE = {"I": 1 / 257, "F": 1.0}  # "I" holds 16-bit samples (PNG, TIFF); "F" is 0..255


@dataclass(frozen=True)
class Source:
    """Decoded pixels plus what is needed to finish them; pixels may be DCT-reduced from stored_size."""

    pixels: np.ndarray
    order: ChannelOrder
    icc: bytes | None
    orientation: int
    stored_size: tuple[int, int]
    # Only when asked for and the source has a pixel that is not opaque; the colour is then straight (not
    # premultiplied), as decoded.
    alpha: np.ndarray | None = None
    metadata: SourceMetadata = SourceMetadata()


def fit_long_side(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """Scale (width, height) so the longer side is long_side, keeping the aspect ratio."""
    width, height = size
    if width >= height:
        return long_side, max(1, round(height * long_side / width))
    return max(1, round(width * long_side / height)), long_side


def decode(data: bytes, max_pixels: int, long_side: int | None = None, keep_alpha: bool = False) -> Source:
    """Decode to 8-bit RGB/BGR/L pixels; a JPEG may come out DCT-reduced, never below the long_side fit.
    keep_alpha: transparency comes back as `alpha` instead of being flattened onto white."""
    image = open_image(data, max_pixels)
    fmt = format_name(image)
    stored = image.size
    metadata = read_metadata(image)
    min_size = fit_long_side(stored, long_side) if long_side else None
    if fmt == "JPEG" and image.mode in ("RGB", "L") and _jpeg_is_complete(data):
        fast = _decode_jpeg_opencv(data, image.mode, _jpeg_scale(stored, min_size))
        if fast is not None:
            order: ChannelOrder = "BGR" if image.mode == "RGB" else "L"
            return Source(fast, order, source_profile(image.info), exif_orientation(image), stored, None, metadata)
    if fmt == "JPEG" and min_size is not None:
        image.draft(image.mode, min_size)
    load_first_frame(image)
    orientation, icc = exif_orientation(image), source_profile(image.info)
    reduction = _jpeg_scale(image.size, min_size)
    if keep_alpha and _has_alpha(image):
        pixels, alpha, order = _to_pixels_with_alpha(image, reduction)
        if alpha is not None:
            return Source(pixels, order, icc, orientation, stored, alpha, metadata)
    pixels, order, icc = _to_pixels(image, icc, reduction)
    return Source(pixels, order, icc, orientation, stored, None, metadata)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _to_pixels_with_alpha(image: Image.Image, reduction: int) -> tuple[np.ndarray, np.ndarray | None, ChannelOrder]:
    """Colour and alpha, reduced by an integer factor with the colour premultiplied (no dark fringes); alpha None
    when every pixel is opaque after all (the caller then decodes as usual)."""
    gray = image.mode in ("L", "LA", "La") or (image.mode in ("P", "PA") and _palette_is_gray(image))
    both = np.asarray(_convert(image, "LA" if gray else "RGBA"))
    alpha = both[..., -1]
    colour = both[..., 0] if gray else both[..., :3]
    if int(alpha.min()) == 255:
        return colour, None, "L" if gray else "RGB"
    if reduction > 1:
        size = (-(-alpha.shape[1] // reduction), -(-alpha.shape[0] // reduction))
        weight = alpha.astype(np.float32) * np.float32(1 / 255)
        premultiplied = colour.astype(np.float32) * (weight if gray else weight[..., None])
        shrunk_weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        shrunk = cv2.resize(premultiplied, size, interpolation=cv2.INTER_AREA)
        divisor = np.maximum(shrunk_weight, np.float32(1e-6))
        colour = np.clip(shrunk / (divisor if gray else divisor[..., None]) + 0.5, 0, 255).astype(np.uint8)
        alpha = np.clip(shrunk_weight * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(colour), np.ascontiguousarray(alpha), "L" if gray else "RGB"


def load_first_frame(image: Image.Image) -> None:
    """Decode the current (first) frame, turning every decoder failure into InvalidImageError."""
    try:
        image.load()
    except DECODE_ERRORS as exc:
        raise InvalidImageError(f"Corrupt or truncated image data: {exc}") from None


def _jpeg_scale(size: tuple[int, int], min_size: tuple[int, int] | None) -> int:
    if min_size is None:
        return 1
    for scale in _JPEG_SCALES:
        if -(-size[0] // scale) >= min_size[0] and -(-size[1] // scale) >= min_size[1]:
            return scale
    return 1


def _jpeg_is_complete(data: bytes) -> bool:
    # Older OpenCV builds return a grey-filled image for a truncated file instead of failing, so only
    # files with an end-of-image marker after the first scan go that way. Entropy-coded data cannot
    # contain FFD9; searching just the tail keeps this cheap (files with a long trailer use Pillow).
    scan = _first_scan_offset(data)
    return scan is not None and data.rfind(b"\xff\xd9", max(scan, len(data) - _EOI_SEARCH_BYTES)) != -1


def _first_scan_offset(data: bytes) -> int | None:
    """Offset of the first top-level SOS marker, skipping segments (an EXIF thumbnail has its own)."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0xDA:
            return position
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def _decode_jpeg_opencv(data: bytes, mode: str, scale: int) -> np.ndarray | None:
    # OpenCV decodes straight into a numpy array (no RGBX copy), with the GIL released.
    flags = (_CV_COLOUR_FLAGS if mode == "RGB" else _CV_GRAY_FLAGS)[scale] | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    return pixels if pixels is not None and pixels.size else None


def _to_pixels(image: Image.Image, icc: bytes | None, reduction: int) -> tuple[np.ndarray, ChannelOrder, bytes | None]:
    """8-bit pixels, converted band by band and reduced by an integer factor on the way.

    The decoded image is never converted (or copied) whole: peak memory is Pillow's buffer (4 bytes per
    pixel for RGB and RGBA) plus one band, instead of two or three full-size copies for alpha or 16 bits.
    """
    width, height = image.size
    out_width, out_height = -(-width // reduction), -(-height // reduction)
    band_rows = max(1, _BAND_ROWS // reduction) * reduction
    out: np.ndarray | None = None
    order: ChannelOrder = "RGB"
    for top in range(0, height, band_rows):
        bottom = min(height, top + band_rows)
        band, band_icc = _to_8bit(image.crop((0, top, width, bottom)), icc)
        pixels = np.asarray(band)
        if reduction > 1:
            size = (out_width, -(-(bottom - top) // reduction))
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)  # a box filter, as DCT scaling is
        if out is None:
            order = "L" if band.mode == "L" else "RGB"
            out = np.empty((out_height, out_width, *pixels.shape[2:]), np.uint8)
        out[top // reduction : top // reduction + pixels.shape[0]] = pixels
    assert out is not None  # an image has at least one row
    return out, order, band_icc


def _to_8bit(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Normalise any Pillow mode to 8-bit RGB or L; alpha goes onto white, CMYK through its profile."""
    mode = image.mode
    if mode == "CMYK":
        converted = convert_image_to_srgb(image, icc)
        return (converted if converted is not None else _convert(image, "RGB")), None
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_high_bit_depth_gray(image)), icc
    if mode in ("P", "PA", "RGBA", "RGBa", "LA", "La") or "transparency" in image.info:
        return _flatten_on_white(image), icc
    if mode not in ("RGB", "L"):
        return _convert(image, "L" if mode == "1" else "RGB"), icc
    return image, icc


def _high_bit_depth_gray(image: Image.Image) -> np.ndarray:
    # Pillow's convert("L") clips 16-bit samples to 255 (an all-white image); scale instead.
    scale = _HIGH_BIT_DEPTH_SCALE["F" if image.mode == "F" else "I"]
    samples = np.asarray(image).astype(np.float32)
    gray: np.ndarray = np.clip(samples * scale + 0.5, 0, 255).astype(np.uint8)
    return gray


def _flatten_on_white(image: Image.Image) -> Image.Image:
    # Dropping alpha would expose whatever colour hides under transparent pixels (often black).
    gray = image.mode in ("L", "LA", "La") or (image.mode in ("P", "PA") and _palette_is_gray(image))
    rgba = _convert(image, "LA" if gray else "RGBA")
    base_mode = "L" if gray else "RGB"
    background = Image.new(base_mode, rgba.size, 255 if gray else (255, 255, 255))
    background.paste(rgba.convert(base_mode), mask=rgba.getchannel("A"))
    return background


def _palette_is_gray(image: Image.Image) -> bool:
    palette = image.palette
    return palette is not None and palette.mode == "L"


def _convert(image: Image.Image, mode: str) -> Image.Image:
    try:
        return image.convert(mode)
    except DECODE_ERRORS as exc:
        raise InvalidImageError(f"Unsupported pixel format {image.mode}: {exc}") from None
