"""Invariants of the engine's speed tricks: each must give the same answer as the plain way."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imaging import _pixels
from imaging._decode import _jpeg_is_complete
from tests.imaging.images import encode, quadrants


@pytest.mark.parametrize(("height", "sigma"), [(300, 1.0), (129, 0.73), (5, 1.0), (1, 1.0)])
def test_strip_unsharp_mask_equals_a_full_image_one(height: int, sigma: float) -> None:
    pixels = np.random.default_rng(12).integers(0, 256, (height, 70, 3), dtype=np.uint8)
    ksize = 2 * int(np.ceil(2 * sigma)) + 1
    blurred = cv2.GaussianBlur(pixels, (ksize, ksize), sigma)
    expected = cv2.addWeighted(pixels, 1.5, blurred, -0.5, 0)
    _pixels.unsharp_in_place(pixels, sigma)
    assert np.array_equal(pixels, expected)


def test_colour_matrix_in_place_equals_a_copy() -> None:
    pixels = np.random.default_rng(13).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    readonly = pixels.copy()
    readonly.flags.writeable = False
    expected = _pixels.tone_and_colour(readonly, "RGB")
    result = _pixels.tone_and_colour(pixels, "RGB")
    assert np.shares_memory(result, pixels)  # no second full-size buffer
    assert np.array_equal(result, expected)


def test_channel_order_does_not_change_the_result_and_output_is_bgr() -> None:
    rgb = np.random.default_rng(14).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    from_rgb = _pixels.tone_and_colour(rgb.copy(), "RGB")
    from_bgr = _pixels.tone_and_colour(np.ascontiguousarray(rgb[..., ::-1]), "BGR")
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
