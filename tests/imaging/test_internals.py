"""Invariants of the engine's speed tricks: each must give the same answer as the plain way."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imaging import _pixels, finish
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


def test_to_bgr_keeps_every_value_and_only_reorders() -> None:
    rgb = np.random.default_rng(14).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    from_rgb = finish.to_bgr(rgb.copy(), "RGB")
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    assert finish.to_bgr(bgr, "BGR") is bgr  # nothing to do, nothing copied
    assert np.array_equal(from_rgb, bgr) and tuple(from_rgb[0, 0]) == (0, 0, 255)
    gray = rgb[..., 1].copy()
    assert np.array_equal(finish.to_bgr(gray, "L"), np.dstack([gray] * 3))


@pytest.mark.parametrize(
    ("scale", "halvings", "interpolates", "reduced"),
    [
        (1.0, 0, False, False),
        (1.3, 0, True, False),
        (1.99, 0, True, True),
        (1.0, 1, False, False),
        (1.5, 2, True, False),
    ],
)
def test_shrink_kernels_are_symmetric_and_keep_flat_areas(
    scale: float, halvings: int, interpolates: bool, reduced: bool
) -> None:
    kernel = _pixels.shrink_kernel(scale, halvings, interpolates, reduced)
    assert kernel.shape == (7,) and np.allclose(kernel, kernel[::-1]) and abs(float(kernel.sum()) - 1.0) < 1e-5
    flat = np.full((60, 90, 3), 77, np.uint8)
    assert (cv2.sepFilter2D(flat, -1, kernel, kernel) == 77).all()


def test_shrinking_in_place_equals_shrinking_a_copy() -> None:
    pixels = np.random.default_rng(13).integers(0, 256, (300, 450, 3), dtype=np.uint8)
    readonly = pixels.copy()
    readonly.flags.writeable = False
    expected = _pixels.resize(readonly, (300, 200))
    assert np.array_equal(_pixels.resize(pixels, (300, 200)), expected)
    assert not np.array_equal(readonly, pixels)  # the writable source was filtered in place


def test_incomplete_jpeg_guard_is_not_fooled_by_an_embedded_thumbnail() -> None:
    main = encode(quadrants(200, 150), "JPEG")
    thumbnail = encode(quadrants(20, 15), "JPEG")  # has its own SOS and EOI markers
    segment = b"\xff\xe9" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail
    with_thumbnail = main[:2] + segment + main[2:]
    assert _jpeg_is_complete(main) and _jpeg_is_complete(with_thumbnail)
    assert not _jpeg_is_complete(with_thumbnail[: len(with_thumbnail) - 200])
    assert not _jpeg_is_complete(b"\xff\xd8\xff\xe0\x00")
