"""Transparency kept: colour and alpha resampled together (premultiplied, no fringes), the network enlarging the
colour with the alpha enlarged alongside; and the output formats through the SR child processes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imaging import EngineConfig, Output, OutputFormat, ProcessLimits, SuperResolutionProcesses, enhance_image
from tests.exiftool import FIXTURE, read_tags
from tests.factories import photo_bytes

SR = EngineConfig(engine="sr", sr_tile_size=64)


def sticker(width: int = 200, height: int = 160) -> bytes:
    """An orange disc with a soft edge on a transparent background whose hidden colour is black."""
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot(xx - width / 2, yy - height / 2)
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[..., :3] = (255, 140, 0)
    pixels[..., 3] = np.clip((min(width, height) * 0.4 - distance) * 64, 0, 255).astype(np.uint8)
    pixels[pixels[..., 3] == 0, :3] = 0
    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, "PNG")
    return out.getvalue()


def alpha_psnr(data: bytes, source: bytes) -> float:
    """PSNR of the output's alpha against the source's alpha resized (Lanczos) to the output's size."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGBA"
        alpha = np.asarray(image.getchannel("A")).astype(np.float64)
        size = image.size
    with Image.open(io.BytesIO(source)) as original:
        reference = np.asarray(original.getchannel("A").resize(size, Image.Resampling.LANCZOS)).astype(np.float64)
    return float(10 * np.log10(255**2 / max(float(np.mean((alpha - reference) ** 2)), 1e-9)))


def edge_colours(data: bytes) -> np.ndarray:
    """The visible colour of the half-transparent edge pixels."""
    with Image.open(io.BytesIO(data)) as image:
        rgba = np.asarray(image).astype(np.int32)
    edge = (rgba[..., 3] > 8) & (rgba[..., 3] < 247)
    assert edge.sum() > 50
    return rgba[edge, :3]


@pytest.mark.parametrize("long_side", [100, 200, 300], ids=["shrink", "same", "enlarge"])
@pytest.mark.parametrize("fmt", ["png", "webp", "avif"])
def test_transparency_survives_resampling_without_dark_fringes(long_side: int, fmt: OutputFormat) -> None:
    source = sticker()
    result = enhance_image(source, long_side, output=Output(format=fmt))
    assert result.format == fmt.upper() and result.engine == "classic"
    lossless = fmt == "png"
    assert alpha_psnr(result.data, source) > (30 if lossless else 26)
    colours = edge_colours(result.data)
    # Straight resampling would mix the hidden black in: the edge would darken towards (0, 0, 0).
    assert colours[:, 0].min() > (225 if lossless else 200)
    assert np.abs(colours[:, 1] - 140).max() < (20 if lossless else 40)


def test_super_resolution_enlarges_the_colour_and_the_alpha_alongside() -> None:
    source = sticker(80, 64)
    result = enhance_image(source, 320, config=SR, output=Output(format="png"))
    assert result.engine == "sr" and (result.width, result.height) == (320, 256)
    assert alpha_psnr(result.data, source) > 26
    colours = edge_colours(result.data)
    assert colours[:, 0].min() > 200 and np.abs(colours[:, 1] - 140).max() < 40


def test_auto_writes_png_only_for_a_source_with_transparency() -> None:
    assert enhance_image(sticker(), 100, output=Output(format="auto")).format == "PNG"
    # logo.png is RGBA but fully opaque: nothing to keep, so a JPEG as usual.
    assert enhance_image(photo_bytes("logo.png"), 100, output=Output(format="auto")).format == "JPEG"
    assert enhance_image(FIXTURE.read_bytes(), 100, output=Output(format="auto")).format == "JPEG"


def test_the_sr_processes_write_the_format_and_metadata_asked_for() -> None:
    pool = SuperResolutionProcesses(SR, ProcessLimits(processes=1))
    try:
        result = pool.enhance(
            FIXTURE.read_bytes(), 1024, 60_000_000, lambda done, total: None, output=Output("webp", keep_location=True)
        )
    finally:
        pool.close()
    assert (result.engine, result.format, result.width, result.height) == ("sr", "WEBP", 1024, 681)
    tags = read_tags(result.data)
    assert tags["File:MIMEType"] == "image/webp"
    assert tags["IFD0:Orientation"] == 1 and tags["ExifIFD:LensModel"].startswith("iPhone 15 Pro")
    assert tags["Composite:GPSLatitude"] == pytest.approx(38.7223)
