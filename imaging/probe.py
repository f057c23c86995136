"""Upload-time validation: what the image is and whether it decodes, without enhancing it."""

from __future__ import annotations

from dataclasses import dataclass

from imaging._decode import load_first_frame
from imaging._source import DEFAULT_MAX_PIXELS, exif_orientation, format_name, open_image, oriented

# A 1/8-scale JPEG decode still entropy-decodes every block, so truncation is caught at a fraction of the cost.
_JPEG_VERIFY_SCALE = 8


@dataclass(frozen=True)
class ImageInfo:
    """Displayed size (after EXIF orientation) and upper-case format name, e.g. "JPEG"."""

    width: int
    height: int
    format: str


def probe_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Identify the image, refuse it before decoding if it declares too many pixels, then verify it decodes."""
    image = open_image(data, max_pixels)
    fmt = format_name(image)
    stored = image.size
    if fmt == "JPEG":
        target = (max(1, stored[0] // _JPEG_VERIFY_SCALE), max(1, stored[1] // _JPEG_VERIFY_SCALE))
        image.draft(image.mode, target)
    load_first_frame(image)
    width, height = oriented(stored, exif_orientation(image))
    return ImageInfo(width=width, height=height, format=fmt)
