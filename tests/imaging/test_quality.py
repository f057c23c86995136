"""The enhancement itself: gentle levels, saturation, no aliasing when shrinking, no visible halos."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from bench.photos import photo_like
from core.vocabulary import TIER_LONG_SIDES
from imaging import enhance_image
from tests.imaging.images import decoded, encode

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "photos"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * float(np.log10(255**2 / mse))


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


def _saturation(pixels: np.ndarray) -> float:
    values = pixels.astype(np.int16)
    return float((values.max(axis=2) - values.min(axis=2)).mean())


def _scene(kind: str) -> np.ndarray:
    """Pictures whose tone a histogram rule would 'fix': the photographer's choice, which must be kept."""
    rng = np.random.default_rng(10)
    texture = cv2.GaussianBlur(rng.normal(0.0, 1.0, (160, 240)), (0, 0), 2.0)[..., None]
    texture = texture / texture.std()
    tint = np.array([10.0, 0.0, -10.0])
    base, spread = {
        "low_key": (28, 14),
        "night": (18, 10),
        "high_key": (222, 12),
        "hazy": (125, 18),
        "dull": (120, 30),
    }[kind]
    image = base + spread * texture + (tint if kind in ("hazy", "dull") else tint / 2)
    if kind == "night":
        image[40:44, 100:140] = (250, 220, 160)  # a few street lights
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["low_key", "night", "high_key", "hazy", "dull"])
@pytest.mark.parametrize("long_side", [240, 120])  # own size and a shrink
def test_the_photos_look_is_kept(kind: str, long_side: int) -> None:
    image = _scene(kind)
    out = decoded(enhance_image(encode(image, "PNG"), long_side).data)
    reference = cv2.resize(image, out.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert abs(_luma(out).mean() - _luma(reference).mean()) <= 1.0  # exposure
    assert abs(_saturation(out) - _saturation(reference)) <= 1.0  # saturation
    means = [out[..., c].astype(float).mean() - reference[..., c].astype(float).mean() for c in range(3)]
    assert max(means) - min(means) <= 1.0  # white balance


def test_at_its_own_size_a_photo_comes_out_as_jpeg_alone_would() -> None:
    with Image.open(PHOTOS / "coffee.png") as photo:
        original = np.asarray(photo.convert("RGB"))
    height, width = original.shape[:2]
    out = decoded(enhance_image(encode(original, "PNG"), width).data)
    jpeg_alone = decoded(encode(original, "JPEG", quality=90))
    assert _psnr(original, out) >= _psnr(original, jpeg_alone) - 0.1  # nothing sharpened, stretched or tinted
    laplacian = [cv2.Laplacian(_luma(p), cv2.CV_32F).var() for p in (jpeg_alone, out)]
    assert laplacian[1] <= 1.05 * laplacian[0]  # no grain added beyond what encoding adds


def test_shrinking_amplifies_grain_no_more_than_lanczos() -> None:
    flat = np.clip(np.random.default_rng(18).normal(50, 3, (400, 600, 3)), 0, 255).astype(np.uint8)
    for long_side in (300, 400):  # an exact halving (pyramid) and a 1.5x reduction
        out = decoded(enhance_image(encode(flat, "PNG"), long_side).data)
        reference = _lanczos(flat, out.shape[1::-1])
        laplacian = [cv2.Laplacian(_luma(p), cv2.CV_32F).var() for p in (reference, out)]
        assert laplacian[1] <= 1.15 * laplacian[0]


def _lanczos(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def _high_frequency_energy(pixels: np.ndarray) -> float:
    y = _luma(pixels)
    return float(np.mean((y - cv2.GaussianBlur(y, (0, 0), 1.0)) ** 2))


@pytest.mark.parametrize(
    ("fmt", "size", "long_side"),
    [
        ("JPEG", (3000, 2000), 1024),
        ("JPEG", (3000, 2000), 2048),
        ("JPEG", (2048, 1365), 1024),
        ("PNG", (1800, 1200), 800),
    ],
)
def test_downscales_are_as_sharp_as_lanczos(fmt: str, size: tuple[int, int], long_side: int) -> None:
    # DCT-scaled decoding (the JPEGs), an exact DCT halving, and pyramid halving (the PNG) all reach
    # Lanczos's fine detail; both delivered as the engine delivers (JPEG q90).
    source = photo_like(*size, seed=21)
    options = {"quality": 95} if fmt == "JPEG" else {}
    result = enhance_image(encode(source, fmt, **options), long_side)
    reference = decoded(encode(_lanczos(source, (result.width, result.height)), "JPEG", quality=90))
    ratio = _high_frequency_energy(decoded(result.data)) / _high_frequency_energy(reference)
    assert 0.9 <= ratio <= 1.4


def _sampling(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        return JpegImagePlugin.get_sampling(image)  # 0: 4:4:4, 2: 4:2:0


def test_chroma_is_kept_where_4_2_0_would_lose_it() -> None:
    small = enhance_image(encode(photo_like(300, 200, seed=3), "PNG"), 600)
    assert (small.width * small.height, _sampling(small.data)) == (600 * 400, 0)  # small output
    smooth = cv2.GaussianBlur(photo_like(1600, 1000, seed=4), (0, 0), 6)
    assert _sampling(enhance_image(encode(smooth, "PNG"), 1600).data) == 2
    stars = np.full((1000, 1600, 3), 8, np.uint8)
    rng = np.random.default_rng(5)
    for _ in range(2000):  # one-pixel coloured stars, as in a deep-field photo
        stars[rng.integers(0, 1000), rng.integers(0, 1600)] = rng.choice([(255, 80, 60), (70, 120, 255)])
    assert _sampling(enhance_image(encode(stars, "PNG"), 1600).data) == 0


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


@pytest.mark.parametrize("long_side", [100, 200, 300])  # shrunk, same size, enlarged 1.5x
def test_sharpening_leaves_no_halo(long_side: int) -> None:
    image = np.full((100, 200, 3), 60, np.uint8)
    image[:, 100:] = 190
    image[:6] = 0
    image[-6:] = 255  # full range, so the step is not also stretched
    out = _luma(decoded(enhance_image(encode(image, "PNG"), long_side).data))
    row = out[out.shape[0] // 2]
    edge = long_side // 2
    dark, bright = np.median(row[: edge - 8]), np.median(row[edge + 8 :])
    step = bright - dark
    # Enlarging, bicubic interpolation rings by itself (~8 % of the step); the finish must add nothing to it.
    # Shrinking, the reduction may ring as much as a Lanczos resize does, no more.
    size = (long_side, round(long_side / 2))
    if long_side > 200:
        plain = _luma(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC))[size[1] // 2]
    elif long_side < 200:
        plain = _luma(_lanczos(image, size))[size[1] // 2]
    else:
        plain = row
    ringing = max(0.0, dark - plain.min(), plain.max() - bright)
    assert row.min() > dark - ringing - 0.03 * step and row.max() < bright + ringing + 0.03 * step
    far = np.r_[row[edge - 30 : edge - 4], row[edge + 4 : edge + 30]]
    assert np.abs(far - np.where(np.arange(far.size) < far.size // 2, dark, bright)).max() <= 4  # and narrow


@pytest.mark.parametrize("tier", ["TIER_1K", "TIER_4K"])
def test_photo_matches_a_plain_resize(tier: str) -> None:
    # Catches shifts, swaps and artefacts the flat-colour tests cannot see.
    source = photo_like(1500, 1000, seed=11)
    long_side = TIER_LONG_SIDES[tier]
    result = enhance_image(encode(source, "JPEG", quality=92), long_side)
    reference = np.asarray(Image.fromarray(source).resize((result.width, result.height), Image.Resampling.LANCZOS))
    ours, theirs = _luma(decoded(result.data)), _luma(reference)
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.97
    assert np.abs(cv2.GaussianBlur(ours - theirs, (0, 0), 4)).mean() < 8
