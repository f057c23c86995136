"""Reading the source: JPEG quality, colour noise, the denoising level, and what the engine does with them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.photos import photo_like
from imaging import EngineConfig, enhance_image, finish, restoration
from tests.imaging.images import decoded, encode


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * float(np.log10(255**2 / mse))


@pytest.mark.parametrize("quality", [20, 50, 75, 90, 95, 100])
def test_jpeg_quality_is_read_from_the_tables(quality: int) -> None:
    data = encode(photo_like(64, 48, seed=1), "JPEG", quality=quality)
    assert restoration.jpeg_quality(data) == quality


def test_jpeg_quality_of_other_formats_and_foreign_tables() -> None:
    assert restoration.jpeg_quality(encode(photo_like(64, 48, seed=1), "PNG")) is None
    assert restoration.jpeg_quality(b"not an image") is None
    # A camera's own table (flat 4s, a fine table): a high quality, as coarse overall as IJG's 92-ish.
    flat = encode(photo_like(64, 48, seed=1), "JPEG", qtables=[[4] * 64, [6] * 64])
    assert 88 <= (restoration.jpeg_quality(flat) or 0) <= 97


def _clean(width: int, height: int, seed: int) -> np.ndarray:
    """A photo-like image without its sensor grain (blurred away), so its colour is clean."""
    return cv2.GaussianBlur(photo_like(width, height, seed=seed), (0, 0), 1.0)


def _noisy(rgb: np.ndarray, sigma: float, seed: int = 3) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, rgb.shape)
    return np.clip(rgb + noise + 0.5, 0, 255).astype(np.uint8)


def test_colour_noise_is_measured_in_flat_areas_and_texture_does_not_count() -> None:
    flat = np.full((256, 256, 3), (90, 120, 160), np.uint8)
    textured = _clean(256, 256, seed=2)  # texture, smooth colour
    assert restoration.noise_sigma(photo_like(256, 256, seed=2)) > restoration.NOISY_SIGMA  # with its grain
    assert restoration.noise_sigma(flat) == 0.0
    assert restoration.noise_sigma(textured) < restoration.NOISY_SIGMA
    for sigma in (2.0, 4.0):
        measured = restoration.noise_sigma(_noisy(flat, sigma))
        # Per-channel noise of sigma s gives chroma noise of about 0.5-0.6 s in Cr and Cb.
        assert 0.4 * sigma < measured < 0.75 * sigma
        assert restoration.noise_sigma(_noisy(textured, sigma)) > restoration.NOISY_SIGMA
    assert restoration.noise_sigma(np.full((64, 64), 100, np.uint8)) == 0.0  # gray: no colour noise


@pytest.mark.parametrize(
    ("quality", "sigma", "configured", "expected"),
    [
        (None, 0.2, -1, -1),  # a PNG: clean
        (98, 0.2, -1, -1),  # a near-lossless JPEG: clean
        (90, 0.2, -1, 0),
        (75, 0.2, -1, 2),
        (50, 0.2, -1, 3),
        (None, 1.5, -1, 0),  # noisy
        (50, 1.5, -1, 3),
        (None, 0.2, 1, 1),  # never below the configured level
    ],
)
def test_denoising_level_bands(quality: int | None, sigma: float, configured: int, expected: int) -> None:
    assert restoration.sr_noise_level(quality, sigma, configured) == expected


SR = EngineConfig(engine="sr", sr_tile_size=32)


def test_a_clean_source_is_enlarged_exactly_as_with_a_fixed_level() -> None:
    clean = encode(_clean(96, 64, seed=5), "PNG")
    automatic = enhance_image(clean, 192, config=SR)
    fixed = enhance_image(clean, 192, config=EngineConfig(engine="sr", sr_tile_size=32, sr_noise_auto=False))
    assert automatic.engine == "sr" and automatic.data == fixed.data


def test_a_compressed_source_is_restored_closer_to_the_original() -> None:
    truth = _clean(256, 192, seed=6)
    small = cv2.resize(truth, (128, 96), interpolation=cv2.INTER_AREA)
    data = encode(small, "JPEG", quality=40)
    restored = decoded(enhance_image(data, 256, config=SR).data)
    plain = decoded(
        enhance_image(data, 256, config=EngineConfig(engine="sr", sr_tile_size=32, sr_noise_auto=False)).data
    )
    assert _psnr(truth, restored) > _psnr(truth, plain) + 0.3


def test_the_networks_tone_drift_is_undone_without_touching_detail() -> None:
    rng = np.random.default_rng(7)
    source = np.clip(rng.normal(128, 40, (40, 60, 3)), 0, 255).astype(np.uint8)
    enlarged = cv2.resize(source, (120, 80), interpolation=cv2.INTER_CUBIC)
    drifted = cv2.subtract(enlarged, np.full_like(enlarged, 2))  # 2 levels darker, as the network can be
    finish.restore_source_tone(source, drifted)
    shrunk = cv2.resize(drifted, (60, 40), interpolation=cv2.INTER_AREA).astype(float)
    assert abs(shrunk.mean() - source.astype(float).mean()) < 0.3
    detail = [p.astype(float) - cv2.GaussianBlur(p, (0, 0), 1.0).astype(float) for p in (enlarged, drifted)]
    assert np.abs(detail[0] - detail[1]).mean() < 0.6  # a low-frequency correction only


def test_flat_source_areas_lean_on_bicubic_and_detail_keeps_the_network() -> None:
    rng = np.random.default_rng(8)
    source = np.full((40, 80, 3), 90, np.uint8)
    source[:, 40:] = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)  # right half: busy detail
    bicubic = cv2.resize(source, (160, 80), interpolation=cv2.INTER_CUBIC)
    grain = np.asarray(rng.integers(0, 12, size=bicubic.shape), np.int16)
    invented = (bicubic + grain).clip(0, 255).astype(np.uint8)  # grain a network could add
    enlarged = invented.copy()
    finish.smooth_flat_areas(source, enlarged)
    assert np.array_equal(enlarged[:, :70], bicubic[:, :70])  # the flat half: bicubic, the grain gone
    assert np.array_equal(enlarged[:, 86:], invented[:, 86:])  # the busy half: untouched
