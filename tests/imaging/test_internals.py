"""Invariants of the engine's speed tricks: each must give the same answer as the plain way."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imaging import finish
from imaging._decode import _jpeg_is_complete
from tests.imaging.images import encode, quadrants


def _sharpen_whole_image(pixels: np.ndarray, sigma: float, core: int) -> np.ndarray:
    """The guarded unsharp mask written the plain way, on the whole image, in int arithmetic."""
    ksize = 2 * int(np.ceil(2 * sigma)) + 1
    blurred = cv2.GaussianBlur(pixels, (ksize, ksize), sigma).astype(int)
    detail = pixels.astype(int) - blurred
    cored = np.sign(detail) * np.maximum(np.abs(detail) - core, 0)
    lighter = np.clip(pixels + np.round(0.5 * np.maximum(cored, 0) + 1e-9), 0, 255)
    sharpened = np.clip(lighter - np.round(0.5 * np.maximum(-cored, 0) + 1e-9), 0, 255)
    high = cv2.dilate(pixels, np.ones((3, 3), np.uint8)).astype(int)
    low = cv2.erode(pixels, np.ones((3, 3), np.uint8)).astype(int)
    return np.clip(sharpened, low, high).astype(np.uint8)


@pytest.mark.parametrize(("height", "sigma"), [(300, 1.0), (129, 0.73), (5, 1.0), (1, 1.0)])
def test_strip_sharpening_equals_a_whole_image_one(height: int, sigma: float) -> None:
    pixels = np.random.default_rng(12).integers(0, 256, (height, 70, 3), dtype=np.uint8)
    expected = _sharpen_whole_image(pixels, sigma, core=3)
    finish.sharpen_in_place(pixels, sigma, threshold=3)
    assert np.abs(pixels.astype(int) - expected).max() <= 1  # OpenCV rounds halves its own way


def test_sharpening_never_leaves_the_neighbourhood_range() -> None:
    pixels = np.random.default_rng(15).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    high = cv2.dilate(pixels, np.ones((3, 3), np.uint8))
    low = cv2.erode(pixels, np.ones((3, 3), np.uint8))
    finish.sharpen_in_place(pixels, 1.0, threshold=1)
    assert (pixels <= high).all() and (pixels >= low).all()


def test_grain_below_the_noise_threshold_is_left_alone() -> None:
    flat = np.clip(np.random.default_rng(16).normal(60, 2.0, (80, 80, 3)), 0, 255).astype(np.uint8)
    sharpened = flat.copy()
    finish.sharpen_in_place(sharpened)  # threshold estimated from the grain itself
    laplacian = [cv2.Laplacian(p.astype(np.float32), cv2.CV_32F).var() for p in (flat, sharpened)]
    assert laplacian[1] <= 1.1 * laplacian[0]


def test_colour_matrix_in_place_equals_a_copy() -> None:
    pixels = np.random.default_rng(13).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    readonly = pixels.copy()
    readonly.flags.writeable = False
    expected = finish.tone_and_colour(readonly, "RGB")
    result = finish.tone_and_colour(pixels, "RGB")
    assert np.shares_memory(result, pixels)  # no second full-size buffer
    assert np.array_equal(result, expected)


def test_channel_order_does_not_change_the_result_and_output_is_bgr() -> None:
    rgb = np.random.default_rng(14).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    from_rgb = finish.tone_and_colour(rgb.copy(), "RGB")
    from_bgr = finish.tone_and_colour(np.ascontiguousarray(rgb[..., ::-1]), "BGR")
    assert np.array_equal(from_rgb, from_bgr)
    assert tuple(from_rgb[0, 0]) == (0, 0, 255)


def test_incomplete_jpeg_guard_is_not_fooled_by_an_embedded_thumbnail() -> None:
    main = encode(quadrants(200, 150), "JPEG")
    thumbnail = encode(quadrants(20, 15), "JPEG")  # has its own SOS and EOI markers
    segment = b"\xff\xe9" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail
    with_thumbnail = main[:2] + segment + main[2:]
    assert _jpeg_is_complete(main) and _jpeg_is_complete(with_thumbnail)
    assert not _jpeg_is_complete(with_thumbnail[: len(with_thumbnail) - 200])
    assert not _jpeg_is_complete(b"\xff\xd8\xff\xe0\x00")
