"""enhance_image: sizes, orientation, formats, output encoding, bad input, determinism, threads."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin

from core.vocabulary import TIER_LONG_SIDES, TIERS
from imaging import EnhancedImage, InvalidImageError, enhance_image, probe_image
from tests.imaging.images import (
    QUADRANT_CENTRES,
    QUADRANT_COLOURS,
    close,
    colour_at,
    decoded,
    encode,
    jpeg_declaring,
    png_header_only,
    quadrants,
    with_orientation,
)

LOSSLESS_TOLERANCE = 6
LOSSY_TOLERANCE = 16


def test_tier_sizes_are_the_published_ones() -> None:
    assert TIER_LONG_SIDES == {"TIER_1K": 1024, "TIER_2K": 2048, "TIER_4K": 4096}
    assert {str(tier): spec.cost for tier, spec in TIERS.items()} == {"TIER_1K": 2, "TIER_2K": 5, "TIER_4K": 10}


@pytest.mark.parametrize("tier", sorted(TIER_LONG_SIDES))
def test_long_side_is_exactly_the_tier_size(tier: str) -> None:
    long_side = TIER_LONG_SIDES[tier]
    result = enhance_image(encode(quadrants(90, 60), "PNG"), long_side)
    assert (result.width, result.height) == (long_side, round(60 * long_side / 90))
    assert decoded(result.data).shape[:2] == (result.height, result.width)


@pytest.mark.parametrize(("width", "height"), [(1500, 1000), (1001, 333), (333, 1001), (700, 700), (64, 4000)])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_aspect_ratio_is_kept_when_shrinking_and_enlarging(width: int, height: int, fmt: str) -> None:
    data = encode(quadrants(width, height), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    result = enhance_image(data, 1024)
    assert max(result.width, result.height) == 1024
    scale = 1024 / max(width, height)
    assert abs(result.width - width * scale) <= 1 and abs(result.height - height * scale) <= 1
    pixels = decoded(result.data)
    for centre, colour in zip(QUADRANT_CENTRES, QUADRANT_COLOURS, strict=True):
        assert close(colour_at(pixels, *centre), colour, LOSSY_TOLERANCE)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    data = with_orientation(quadrants(90, 60), orientation)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    result = enhance_image(data, 1024)
    pixels = decoded(result.data)
    assert pixels.shape[:2] == (result.height, result.width)
    assert (result.width > result.height) == (reference.shape[1] > reference.shape[0])
    for centre in QUADRANT_CENTRES:
        expected = colour_at(reference, *centre)
        assert close(colour_at(pixels, *centre), expected, LOSSY_TOLERANCE), (orientation, centre)


def test_phone_portrait_comes_out_upright() -> None:
    # Sensor data is landscape; the camera tags it "rotate 90 CW" (orientation 6).
    upright = quadrants(60, 90)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # what the sensor wrote
    result = enhance_image(with_orientation(stored, 6), 2048)
    assert (result.width, result.height) == (1365, 2048)
    pixels = decoded(result.data)
    for centre, colour in zip(QUADRANT_CENTRES, QUADRANT_COLOURS, strict=True):
        assert close(colour_at(pixels, *centre), colour, LOSSY_TOLERANCE)


@pytest.mark.parametrize(
    ("fmt", "options", "tolerance"),
    [
        ("JPEG", {"quality": 95}, LOSSY_TOLERANCE),
        ("PNG", {}, LOSSLESS_TOLERANCE),
        ("WEBP", {"lossless": True}, LOSSLESS_TOLERANCE),
        ("WEBP", {"quality": 90}, LOSSY_TOLERANCE),
        ("GIF", {}, LOSSLESS_TOLERANCE),
        ("TIFF", {}, LOSSLESS_TOLERANCE),
        ("TIFF", {"compression": "tiff_lzw"}, LOSSLESS_TOLERANCE),
        ("BMP", {}, LOSSLESS_TOLERANCE),
        ("AVIF", {"quality": 90}, LOSSY_TOLERANCE),
        ("HEIF", {"quality": 90}, LOSSY_TOLERANCE),
    ],
    ids=["jpeg", "png", "webp-lossless", "webp", "gif", "tiff", "tiff-lzw", "bmp", "avif", "heic"],
)
def test_every_input_format_gives_the_right_colours(fmt: str, options: dict[str, object], tolerance: int) -> None:
    result = enhance_image(encode(quadrants(90, 60), fmt, **options), 1024)
    assert (result.width, result.height) == (1024, 683)
    pixels = decoded(result.data)
    for centre, colour in zip(QUADRANT_CENTRES, QUADRANT_COLOURS, strict=True):
        assert close(colour_at(pixels, *centre), colour, tolerance), (fmt, centre)


def test_output_is_a_baseline_srgb_jpeg_q90() -> None:
    result = enhance_image(encode(quadrants(300, 200), "PNG"), 1024)
    assert isinstance(result, EnhancedImage) and result.format == "JPEG"
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        assert JpegImagePlugin.get_sampling(image) == 0  # 4:4:4 for a small output (4:2:0: test_quality)
        assert not image.info.get("progressive")
        profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(profile)
        with Image.open(io.BytesIO(encode(quadrants(300, 200), "JPEG", quality=90))) as reference:
            assert getattr(image, "quantization", None) == getattr(reference, "quantization", {})  # IJG q90 tables


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a this is not really a gif",
        encode(quadrants(), "PPM"),
        png_header_only(16_000, 16_000),
        jpeg_declaring(65_000, 65_000),
    ],
    ids=["empty", "corrupt-gif", "ppm", "png-bomb", "jpeg-bomb"],
)
def test_bad_input_raises_the_typed_error(data: bytes) -> None:
    with pytest.raises(InvalidImageError):
        enhance_image(data, 1024)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "HEIF", "TIFF"])
@pytest.mark.parametrize("long_side", [256, 2048])  # 256 takes the reduced-size JPEG decode
def test_truncated_input_raises_the_typed_error(fmt: str, long_side: int) -> None:
    data = encode(np.random.default_rng(5).integers(0, 256, (300, 400, 3), dtype=np.uint8), fmt)
    with pytest.raises(InvalidImageError):
        enhance_image(data[: len(data) * 3 // 4], long_side)


@pytest.mark.parametrize("cut", [2, 1000])
def test_probe_and_enhance_agree_on_incomplete_jpegs(cut: int) -> None:
    # Whatever upload accepted must enhance, and whatever it refused must not (no paid job fails later).
    data = encode(np.random.default_rng(8).integers(0, 256, (120, 160, 3), dtype=np.uint8), "JPEG")
    for long_side in (64, 1024):
        with pytest.raises(InvalidImageError):
            probe_image(data[:-cut])
        with pytest.raises(InvalidImageError):
            enhance_image(data[:-cut], long_side)


def test_pixel_limit_is_configurable() -> None:
    data = encode(quadrants(100, 100), "PNG")
    assert enhance_image(data, 64, max_pixels=10_000).width == 64
    with pytest.raises(InvalidImageError, match="Image declares 10000 pixels; the limit is 9999"):
        enhance_image(data, 64, max_pixels=9_999)


@pytest.mark.parametrize("long_side", [0, -5, 1.5, True, 100_000])
def test_invalid_long_side_is_a_programming_error_not_a_bad_image(long_side: object) -> None:
    with pytest.raises(ValueError) as caught:
        enhance_image(encode(quadrants(), "PNG"), long_side)  # type: ignore[arg-type]
    assert not isinstance(caught.value, InvalidImageError)


def test_output_is_deterministic() -> None:
    data = encode(np.random.default_rng(6).integers(0, 256, (200, 300, 3), dtype=np.uint8), "JPEG")
    assert enhance_image(data, 1024) == enhance_image(data, 1024)


def test_threads_give_the_same_bytes_as_sequential_calls() -> None:
    rng = np.random.default_rng(7)
    inputs = [
        (encode(rng.integers(0, 256, (240 + 8 * i, 320, 3), dtype=np.uint8), fmt), side)
        for i, (fmt, side) in enumerate([("JPEG", 1024), ("PNG", 2048), ("JPEG", 256), ("WEBP", 1024)] * 2)
    ]
    sequential = [enhance_image(data, side) for data, side in inputs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(lambda args: enhance_image(*args), inputs))
    assert threaded == sequential
