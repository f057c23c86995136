"""The enhancement itself: gentle levels, saturation, no aliasing when shrinking, no visible halos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.photos import photo_like
from imaging import TIER_SIZES, enhance_image
from tests.imaging.images import BLACK, WHITE, colour_at, decoded, encode


def _luma(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_good_photo_keeps_its_sky_unclipped() -> None:
    height, width = 200, 300
    rows = np.linspace(0.0, 1.0, height // 2)[:, None, None]
    sky = (np.array([110, 160, 225]) * (1 - rows) + np.array([190, 215, 245]) * rows) * np.ones((1, width, 1))
    ground = np.random.default_rng(9).integers(5, 90, (height // 2, width, 3))
    image = np.concatenate([sky, ground]).astype(np.uint8)
    assert (image[: height // 2] == 255).sum() == 0
    out = decoded(enhance_image(encode(image, "PNG"), width).data).astype(int)
    out_sky = out[4 : height // 2 - 4]
    assert (out_sky >= 255).any(axis=2).mean() < 0.01
    # The gradient survives: the sky's blue channel still rises from band to band, top to bottom.
    blue_by_band = out_sky[:90, :, 2].reshape(9, -1).mean(axis=1)
    assert blue_by_band[-1] - blue_by_band[0] > 10 and np.all(np.diff(blue_by_band) > 0)


def test_full_range_image_is_not_stretched() -> None:
    ramp = np.tile(np.linspace(0, 255, 256).astype(np.uint8), (64, 1))
    out = _luma(decoded(enhance_image(encode(ramp, "PNG"), 256).data))
    middle = out[32, 16:-16]
    assert np.abs(middle - np.linspace(0, 255, 256)[16:-16]).max() <= 4


def test_hazy_image_gets_gentle_contrast() -> None:
    rng = np.random.default_rng(10)
    hazy = np.clip(rng.normal(125, 20, (120, 180, 1)) + np.array([10, 0, -10]), 80, 170).astype(np.uint8)
    hazy = cv2.GaussianBlur(hazy, (0, 0), 2)
    out = decoded(enhance_image(encode(hazy, "PNG"), 180).data)
    gain = _luma(out).std() / _luma(hazy).std()
    assert 1.05 < gain < 1.35  # more contrast, but nothing like a full 0..255 stretch
    assert out.min() > 30 and out.max() < 225


def test_saturation_is_raised_slightly_and_grays_stay_neutral() -> None:
    patches = [BLACK, (150, 120, 100), (128, 128, 128), (100, 130, 150), WHITE]
    image = np.concatenate([np.full((40, 40, 3), c, np.uint8) for c in patches], axis=1)
    out = decoded(enhance_image(encode(image, "PNG"), 200).data)
    for index in (1, 3):
        before, after = np.array(patches[index]), np.array(colour_at(out, (index + 0.5) / 5, 0.5))
        chroma_gain = np.ptp(after) / np.ptp(before)
        assert 1.04 < chroma_gain < 1.25
        assert np.array_equal(np.argsort(after), np.argsort(before))  # same hue ordering
    gray = colour_at(out, 2.5 / 5, 0.5)
    assert max(gray) - min(gray) <= 2


@pytest.mark.parametrize(("fmt", "width", "long_side"), [("PNG", 1200, 400), ("JPEG", 3000, 1000), ("PNG", 1500, 1024)])
def test_shrinking_fine_detail_does_not_alias(fmt: str, width: int, long_side: int) -> None:
    # One-pixel stripes are finer than the output can show: they must average to gray, not beat into bands.
    stripes = np.zeros((width // 10, width, 3), np.uint8)
    stripes[:, ::2] = 255
    options = {"quality": 98, "subsampling": 0} if fmt == "JPEG" else {}
    out = _luma(decoded(enhance_image(encode(stripes, fmt, **options), long_side).data))
    centre = out[10:-10, 10:-10]
    assert abs(centre.mean() - 127.5) < 12
    assert centre.std() < 6
    naive = _luma(cv2.resize(stripes, out.shape[::-1], interpolation=cv2.INTER_NEAREST))
    assert naive.std() > 60  # what aliasing looks like


@pytest.mark.parametrize("long_side", [200, 400])  # same size and enlarged 2x
def test_sharpening_leaves_no_wide_halo(long_side: int) -> None:
    image = np.full((100, 200, 3), 60, np.uint8)
    image[:, 100:] = 190
    image[:6] = 0
    image[-6:] = 255  # full range, so the step is not also stretched
    out = _luma(decoded(enhance_image(encode(image, "PNG"), long_side).data))
    scale = long_side // 200
    row = out[50]
    edge = 100 * scale
    dark, bright = np.median(row[edge - 40 * scale : edge - 10 * scale]), np.median(row[edge + 10 * scale :])
    step = bright - dark
    assert row[edge - 6 * scale : edge].min() > dark - 0.2 * step  # undershoot is small...
    assert row[edge : edge + 6 * scale].max() < bright + 0.2 * step  # ...and so is overshoot...
    far = np.r_[row[edge - 30 * scale : edge - 4 * scale], row[edge + 4 * scale : edge + 30 * scale]]
    assert np.abs(far - np.where(np.arange(far.size) < far.size // 2, dark, bright)).max() <= 4  # ...and narrow


@pytest.mark.parametrize("tier", ["TIER_1K", "TIER_4K"])
def test_photo_matches_a_plain_resize(tier: str) -> None:
    # Catches shifts, swaps and artefacts the flat-colour tests cannot see.
    source = photo_like(1500, 1000, seed=11)
    long_side = TIER_SIZES[tier]
    result = enhance_image(encode(source, "JPEG", quality=92), long_side)
    reference = np.asarray(Image.fromarray(source).resize((result.width, result.height), Image.Resampling.LANCZOS))
    ours, theirs = _luma(decoded(result.data)), _luma(reference)
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.97
    assert np.abs(cv2.GaussianBlur(ours - theirs, (0, 0), 4)).mean() < 8
