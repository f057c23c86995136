"""Colour correctness: ICC and nclx P3 to sRGB, alpha onto white, 16-bit, palette, CMYK, grayscale."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from imaging import enhance_image
from imaging.colour import D65, DISPLAY_P3_PRIMARIES, matrix_shaper_profile
from tests.imaging.images import BLACK, BLUE, GREEN, RED, WHITE, close, colour_at, decoded, encode

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "photos"

SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
# Muted P3 colours that are inside sRGB but need visibly different sRGB numbers.
P3_PATCHES = [(200, 120, 60), (90, 170, 100), (170, 80, 150), (90, 140, 190), (128, 128, 128)]


def _rgb_to_xyz(primaries: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Textbook RGB->XYZ matrix for a D65 white; written here independently of the engine."""
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    white = np.array([D65[0] / D65[1], 1.0, (1 - D65[0] - D65[1]) / D65[1]])
    return xyz * np.linalg.solve(xyz, white)


def _p3_to_srgb(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    encoded = np.array(rgb) / 255.0
    linear = np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
    srgb_linear = np.linalg.solve(_rgb_to_xyz(SRGB_PRIMARIES), _rgb_to_xyz(DISPLAY_P3_PRIMARIES) @ linear)
    assert np.all((srgb_linear >= 0) & (srgb_linear <= 1)), "test colour must be inside sRGB"
    out = np.where(srgb_linear <= 0.0031308, srgb_linear * 12.92, 1.055 * srgb_linear ** (1 / 2.4) - 0.055)
    r, g, b = (int(round(v)) for v in out * 255)
    return r, g, b


def _patches(colours: list[tuple[int, int, int]], size: int = 40) -> np.ndarray:
    """A row of flat patches, framed by black and white ones so auto-levels has nothing to stretch."""
    row = [BLACK, *colours, WHITE]
    image = np.zeros((size, size * len(row), 3), np.uint8)
    for i, colour in enumerate(row):
        image[:, i * size : (i + 1) * size] = colour
    return image


def _patch_colours(data: bytes, count: int) -> list[tuple[int, ...]]:
    pixels = decoded(data)
    return [colour_at(pixels, (i + 1.5) / (count + 2), 0.5) for i in range(count)]


@pytest.mark.parametrize(("fmt", "tolerance"), [("PNG", 3), ("JPEG", 6)])
def test_display_p3_profile_is_converted_to_srgb(fmt: str, tolerance: int) -> None:
    p3_profile = matrix_shaper_profile(DISPLAY_P3_PRIMARIES, D65, "Display P3")
    options = {"quality": 97, "subsampling": 0} if fmt == "JPEG" else {}
    tagged = encode(_patches(P3_PATCHES), fmt, icc_profile=p3_profile, **options)
    untagged = encode(_patches(P3_PATCHES), fmt, **options)
    srgb_equivalent = encode(_patches([_p3_to_srgb(c) for c in P3_PATCHES]), fmt, **options)

    converted = _patch_colours(enhance_image(tagged, 280).data, len(P3_PATCHES))
    expected = _patch_colours(enhance_image(srgb_equivalent, 280).data, len(P3_PATCHES))
    ignored = _patch_colours(enhance_image(untagged, 280).data, len(P3_PATCHES))
    for got, want in zip(converted, expected, strict=True):
        assert close(got, want, tolerance), (got, want)
    # Ignoring the profile would be visibly wrong, so the match above is not an accident.
    assert max(abs(a - b) for g, n in zip(converted, ignored, strict=True) for a, b in zip(g, n, strict=True)) > 12


def test_heif_tagged_p3_through_nclx_is_converted() -> None:
    options = {"quality": 95, "chroma": 444, "matrix_coefficients": 6, "full_range_flag": 1}
    p3 = encode(_patches(P3_PATCHES), "HEIF", color_primaries=12, transfer_characteristics=13, **options)
    srgb = encode(
        _patches([_p3_to_srgb(c) for c in P3_PATCHES]),
        "HEIF",
        color_primaries=1,
        transfer_characteristics=13,
        **options,
    )
    converted = _patch_colours(enhance_image(p3, 280).data, len(P3_PATCHES))
    expected = _patch_colours(enhance_image(srgb, 280).data, len(P3_PATCHES))
    for got, want in zip(converted, expected, strict=True):
        assert close(got, want, 8), (got, want)


def test_real_adobe_rgb_photo_is_converted_to_srgb() -> None:
    data = (PHOTOS / "rocket.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as original:
        assert "Adobe RGB" in ImageCms.getProfileDescription(
            ImageCms.ImageCmsProfile(io.BytesIO(original.info["icc_profile"]))
        )
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        adobe = ImageCms.ImageCmsProfile(io.BytesIO(original.info["icc_profile"]))
        managed = ImageCms.profileToProfile(original, adobe, srgb, outputMode="RGB")
        assert managed is not None
        unmanaged = original.convert("RGB")
    result = enhance_image(data, 1024)
    assert (result.width, result.height) == (1024, 683)
    output = decoded(result.data).astype(np.float32)

    def distance(reference: Image.Image) -> float:
        resized = np.asarray(reference.resize((1024, 683), Image.Resampling.LANCZOS)).astype(np.float32)
        return float(np.abs(cv2.GaussianBlur(output - resized, (0, 0), 3)).mean())

    assert distance(managed) < 0.7 * distance(unmanaged)


def test_transparent_areas_become_white_not_black() -> None:
    rgba = np.zeros((60, 90, 4), np.uint8)  # fully transparent black...
    rgba[:, 60:] = (0, 200, 0, 255)  # ...beside opaque green...
    rgba[:, 30:60] = (0, 0, 0, 128)  # ...and half-transparent black
    pixels = decoded(enhance_image(encode(rgba, "PNG"), 1024).data)
    assert close(colour_at(pixels, 1 / 6, 0.5), WHITE, 4)
    assert close(colour_at(pixels, 1 / 2, 0.5), (127, 127, 127), 12)
    green = colour_at(pixels, 5 / 6, 0.5)
    assert green[1] > 180 and green[0] < 25 and green[2] < 25


def test_gray_with_alpha_is_flattened_on_white() -> None:
    la = np.zeros((60, 90, 2), np.uint8)
    la[:, 45:] = (40, 255)
    pixels = decoded(enhance_image(encode(Image.fromarray(la, "LA"), "PNG"), 512).data)
    assert close(colour_at(pixels, 0.2, 0.5), WHITE, 4)
    assert colour_at(pixels, 0.8, 0.5)[0] < 60


def test_palette_gif_with_transparency() -> None:
    image = Image.new("P", (90, 60), 0)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))  # index 0 is black, but clear
    image.paste(1, (45, 0, 90, 30))
    image.paste(2, (45, 30, 90, 60))
    pixels = decoded(enhance_image(encode(image, "GIF", transparency=0), 1024).data)
    assert close(colour_at(pixels, 0.2, 0.5), WHITE, 4)
    assert close(colour_at(pixels, 0.75, 0.25), RED, 16)
    assert close(colour_at(pixels, 0.75, 0.75), BLUE, 16)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (60, 40), colour) for colour in (GREEN, RED, BLUE)]
    for frame in frames:
        frame.paste(WHITE, (0, 0, 10, 40))
        frame.paste(BLACK, (50, 0, 60, 40))
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    assert close(colour_at(decoded(enhance_image(data, 600).data), 0.5, 0.5), GREEN, 16)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_keeps_its_tones(fmt: str) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (32, 1))
    image = Image.fromarray(ramp)
    assert image.mode.startswith("I;16")
    pixels = decoded(enhance_image(encode(image, fmt), 256).data).astype(int)
    row = pixels[16]
    assert np.abs(row[:, 0] - row[:, 1]).max() <= 2 and np.abs(row[:, 1] - row[:, 2]).max() <= 2  # neutral
    assert row[4, 0] < 16 and row[-5, 0] > 239
    assert abs(row[128, 0] - 128) <= 8  # not white, as a naive convert("RGB") makes it
    assert np.all(np.diff(row[8:-8, 0]) >= -2)  # still a ramp


def test_16_bit_rgb_png() -> None:
    pixels = np.zeros((60, 90, 3), np.uint16)
    pixels[:, :45] = (65535, 0, 0)
    pixels[:, 45:] = (0, 0, 65535)
    pixels[:5] = 65535
    pixels[-5:] = 0
    ok, png = cv2.imencode(".png", pixels[..., ::-1])  # OpenCV writes 48-bit PNGs from BGR
    assert ok
    result = decoded(enhance_image(png.tobytes(), 900).data)
    assert close(colour_at(result, 0.25, 0.5), RED, 10)
    assert close(colour_at(result, 0.75, 0.5), BLUE, 10)


def test_cmyk_jpeg_has_the_right_colours() -> None:
    cmyk = Image.new("CMYK", (80, 80))
    inks = {(0, 0): (255, 0, 0, 0), (40, 0): (0, 255, 0, 0), (0, 40): (0, 0, 255, 0), (40, 40): (0, 0, 0, 255)}
    for (x, y), ink in inks.items():
        cmyk.paste(ink, (x, y, x + 40, y + 40))
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    pixels = decoded(enhance_image(data, 1024).data)
    expected = {(0.25, 0.25): (0, 255, 255), (0.75, 0.25): (255, 0, 255), (0.25, 0.75): (255, 255, 0)}
    for centre, colour in expected.items():
        assert close(colour_at(pixels, *centre), colour, 16), centre
    assert max(colour_at(pixels, 0.75, 0.75)) < 20  # black ink is black


def test_grayscale_jpeg_comes_out_as_neutral_rgb() -> None:
    gray = np.tile(np.linspace(0, 255, 200).astype(np.uint8), (100, 1))
    result = enhance_image(encode(gray, "JPEG", quality=95), 1024)
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.mode == "RGB"
    pixels = decoded(result.data).astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() <= 3
    assert abs(colour_at(pixels, 0.5, 0.5)[0] - 128) <= 8
