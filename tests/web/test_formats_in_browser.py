"""Every output format opens in real Chromium: each enhanced result is drawn on a canvas and read back, colour and
transparency as written (an AVIF, WebP or PNG a browser cannot show would be no use to the people it is for)."""

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging import Output, OutputFormat, enhance_image
from tests.web.browser import chromium

# Draws the image on a canvas, then answers [width, height, r, g, b, a at the centre, a at the top-left corner].
DRAW = """
const [source, done] = arguments;
const image = new Image();
image.onload = () => {
  const canvas = Object.assign(document.createElement("canvas"), { width: image.width, height: image.height });
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const centre = context.getImageData(image.width >> 1, image.height >> 1, 1, 1).data;
  const corner = context.getImageData(1, 1, 1, 1).data;
  done([image.width, image.height, ...centre, corner[3]]);
};
image.onerror = () => done(null);
image.src = source;
"""


def disc() -> bytes:
    """A 120x90 PNG: a blue disc on a transparent background."""
    yy, xx = np.mgrid[:90, :120]
    pixels = np.zeros((90, 120, 4), np.uint8)
    pixels[..., :3] = (30, 80, 220)
    pixels[..., 3] = np.where(np.hypot(xx - 60, yy - 45) < 35, 255, 0)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
def test_each_format_draws_on_a_canvas(fmt: OutputFormat, tmp_path: Path) -> None:
    result = enhance_image(disc(), 240, output=Output(format=fmt))
    media = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}[fmt]
    source = f"data:{media};base64,{base64.b64encode(result.data).decode()}"
    with chromium(tmp_path / "profile", tmp_path / "downloads") as driver:
        driver.get("about:blank")
        drawn = driver.execute_async_script(DRAW, source)
    assert drawn is not None, f"Chromium could not decode the {fmt} result"
    width, height, red, green, blue, alpha, corner_alpha = drawn
    assert (width, height) == (240, 180)
    assert alpha == 255 and abs(red - 30) <= 12 and abs(green - 80) <= 12 and abs(blue - 220) <= 12
    # JPEG has no transparency (flattened on white); the others keep it.
    assert corner_alpha == (255 if fmt == "jpeg" else 0)
