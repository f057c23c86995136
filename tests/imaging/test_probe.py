"""probe_image: what the upload endpoint calls to accept or refuse a file."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from imaging import ImageInfo, InvalidImageError, probe_image
from tests.imaging.images import encode, jpeg_declaring, png_header_only, quadrants, with_orientation

FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF", "HEIF"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_supported_format_is_identified(fmt: str) -> None:
    info = probe_image(encode(quadrants(90, 60), fmt))
    assert info == ImageInfo(width=90, height=60, format=fmt)


@pytest.mark.parametrize(("orientation", "expected"), [(1, (90, 60)), (3, (90, 60)), (6, (60, 90)), (8, (60, 90))])
def test_size_is_as_displayed_after_exif_orientation(orientation: int, expected: tuple[int, int]) -> None:
    info = probe_image(with_orientation(quadrants(90, 60), orientation))
    assert (info.width, info.height) == expected


def test_multi_picture_jpeg_is_reported_as_jpeg() -> None:
    frames = [Image.fromarray(quadrants(40, 30)), Image.fromarray(quadrants(40, 30))]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert probe_image(data).format == "JPEG"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_truncated_file_is_refused(fmt: str) -> None:
    rng = np.random.default_rng(3)
    data = encode(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), fmt)
    with pytest.raises(InvalidImageError):
        probe_image(data[: len(data) * 2 // 3])


def test_truncated_jpeg_error_says_so() -> None:
    data = encode(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")
    with pytest.raises(InvalidImageError, match="truncated"):
        probe_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x00" * 1000, encode(quadrants(), "PPM"), encode(quadrants(), "ICO")],
    ids=["empty", "text", "zeros", "ppm", "ico"],
)
def test_unsupported_or_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidImageError):
        probe_image(data)


def test_unsupported_format_message_lists_what_is_supported() -> None:
    with pytest.raises(InvalidImageError, match="Unsupported.*JPEG.*HEIF"):
        probe_image(encode(quadrants(), "PPM"))


def test_bomb_header_is_refused_before_decoding() -> None:
    bomb = png_header_only(16_000, 16_000)
    assert len(bomb) < 200
    started = time.perf_counter()
    with pytest.raises(InvalidImageError, match="Image declares 256000000 pixels; the limit is 60000000"):
        probe_image(bomb)
    assert time.perf_counter() - started < 0.5  # decoding 256 MP would take seconds and gigabytes


def test_limit_is_configurable_and_inclusive() -> None:
    data = encode(quadrants(100, 100), "PNG")
    assert probe_image(data, max_pixels=10_000).width == 100
    with pytest.raises(InvalidImageError, match="Image declares 10000 pixels; the limit is 9999"):
        probe_image(data, max_pixels=9_999)


def test_just_over_the_default_limit_is_refused() -> None:
    with pytest.raises(InvalidImageError, match="Image declares 64000000 pixels; the limit is 60000000"):
        probe_image(png_header_only(8_000, 8_000))


def test_huge_jpeg_header_is_refused_with_its_pixel_count() -> None:
    with pytest.raises(InvalidImageError, match="Image declares 4225000000 pixels"):
        probe_image(jpeg_declaring(65_000, 65_000))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_size_between_the_two_pillow_limits_gets_our_message() -> None:
    with pytest.raises(InvalidImageError, match="Image declares 100000000 pixels; the limit is 60000000"):
        probe_image(png_header_only(10_000, 10_000))


def test_error_is_a_value_error() -> None:
    assert issubclass(InvalidImageError, ValueError)
