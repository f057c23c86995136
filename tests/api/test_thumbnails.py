"""Thumbnails decode in the API's decode slots, once per image; an unreadable original is remembered, not decoded
again on every request; 16-bit grey PNGs work."""

import io
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from api.state import app_state
from services.thumbnails import failure_key, thumbnail_key
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings
from tests.factories import jpeg_bytes, make_album, make_image, make_user


def grey16_png(width: int = 1600, height: int = 1200) -> bytes:
    """A 16-bit greyscale PNG with a left-to-right ramp over the whole 16-bit range."""
    ramp = np.linspace(0, 65535, width, dtype=np.float64).astype(np.uint16)
    pixels = np.tile(ramp, (height, 1))
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def test_a_16_bit_grey_png_gets_a_faithful_thumbnail(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    image = make_image(h.engine, h.storage, make_album(h.engine, user), grey16_png())
    response = h.http.get(f"/api/images/{image}/thumbnail", headers=user.headers)
    assert response.status_code == 200, response.text
    with PILImage.open(io.BytesIO(response.content)) as thumb:
        assert thumb.size == (320, 240)
        grey = thumb.convert("L")
        left, middle, right = (grey.getpixel((x, 120)) for x in (2, 160, 317))
    # The ramp survives: black on the left, mid-grey in the middle, white on the right (not all white).
    assert isinstance(left, int) and isinstance(middle, int) and isinstance(right, int)
    assert left < 10 and 110 < middle < 145 and right > 245


def test_an_unreadable_original_is_404_and_not_decoded_again(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    image = make_image(h.engine, h.storage, album, b"\x89PNG\r\n\x1a\n truncated")
    first = h.http.get(f"/api/images/{image}/thumbnail", headers=user.headers)
    assert (first.status_code, first.json()) == (404, {"error": "No thumbnail: the original is not a readable image"})
    assert h.storage.exists(failure_key(image, h.settings.thumbnail_size))
    # The original is not read again: even a readable one under its key would not be (the marker answers).
    original = next((h.storage.root / "originals" / album).iterdir())
    original.write_bytes(jpeg_bytes())
    again = h.http.get(f"/api/images/{image}/thumbnail", headers=user.headers)
    assert again.status_code == 404
    assert not h.storage.exists(thumbnail_key(image, h.settings.thumbnail_size))
    # Deleting the image removes the marker too.
    assert h.http.delete(f"/api/images/{image}", headers=user.headers).status_code == 204
    assert not list((h.storage.root / "thumbnails").iterdir())


def test_thumbnails_wait_for_the_upload_decode_slots(sqlite_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(sqlite_url, storage, upload_decode_slots=1, upload_decode_wait_seconds=0.3)
    engine = engine_for(sqlite_url)
    user = make_user(engine)
    image = make_image(engine, storage, make_album(engine, user), jpeg_bytes(800, 600))
    with LiveServer(settings) as api:
        slots = app_state(api.app).decode_slots
        with slots:  # an upload being checked holds the only slot
            busy = api.http.get(f"/api/images/{image}/thumbnail", headers=user.headers)
            assert (busy.status_code, busy.json()) == (
                503,
                {"error": "Server busy checking other uploads; retry shortly"},
            )
            assert not storage.exists(thumbnail_key(image, settings.thumbnail_size))
        made = api.http.get(f"/api/images/{image}/thumbnail", headers=user.headers)
        assert made.status_code == 200
        assert storage.get(thumbnail_key(image, settings.thumbnail_size)) == made.content
