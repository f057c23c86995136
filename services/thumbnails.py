"""Small previews of originals, made once and kept in storage beside them: JPEG, or WebP with its transparency for
an original that has some.

A thumbnail is a decode like an upload's check, so it runs in the same process-wide decode slots (a 60 MP PNG
takes about 240 MB to decode), once per image however many requests ask at once, from a reduced-size decode
(JPEG's DCT scaling; a box reduction before the Lanczos filter otherwise). An original that cannot be made into
a thumbnail is remembered by a small marker beside it, so it is answered 404 at once instead of being decoded again
on every request.
"""

import io
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps
from sqlmodel import Session, col, select

from core.errors import NotFound
from db.models import Image
from services.uploads import DecodeSlots
from storage.base import ObjectNotFound, Storage

log = logging.getLogger(__name__)

# Bumped when the way thumbnails are made changes, so cached copies (and browsers' ETags) are renewed. 2: a
# transparent original's thumbnail keeps its transparency (WebP); the key no longer names a format.
THUMBNAIL_VERSION = 2
_WEBP_QUALITY = 82
NOT_AN_IMAGE = "No thumbnail: the original is not a readable image"


def thumbnail_key(image_id: str, size: int) -> str:
    """Storage key of an image's thumbnail at a size."""
    return f"thumbnails/{image_id}-{size}-v{THUMBNAIL_VERSION}"


def thumbnail_keys(image_id: str, size: int) -> list[str]:
    """Every key a thumbnail of the image may be under: this version's and the first one's (deleted together)."""
    return [thumbnail_key(image_id, size), f"thumbnails/{image_id}-{size}-v1.jpg"]


def thumbnail_media_type(data: bytes) -> str:
    """image/webp for a thumbnail that kept transparency, else image/jpeg."""
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else "image/jpeg"


def failure_key(image_id: str, size: int) -> str:
    """Storage key of the marker saying the image's thumbnail cannot be made."""
    return f"thumbnails/{image_id}-{size}-v{THUMBNAIL_VERSION}.failed"


def etag(image_id: str, size: int) -> str:
    """Originals never change under an id, so the id, size and version name the thumbnail's bytes."""
    return f'"{image_id}-{size}-v{THUMBNAIL_VERSION}"'


class UnreadableImage(Exception):
    """The original cannot be decoded into a thumbnail."""


def make_thumbnail(data: bytes, size: int, max_pixels: int) -> bytes:
    """An image whose longer side is at most `size`, upright, colour profile kept: a WebP keeping the original's
    transparency when it has any, else a JPEG (alpha that is all opaque flattened)."""
    with PILImage.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > max_pixels:  # from the header: a pixel bomb is refused before anything is decoded
            raise UnreadableImage(f"{width}x{height} is more than {max_pixels} pixels")
        image.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        icc = image.info.get("icc_profile")
        image.seek(0)
        small = _eight_bits(image)
        transparent = _transparent(small)
        if transparent is not None:
            small = transparent  # Pillow's resize premultiplies RGBA, so hidden colour does not fringe the edge
        # Reduced in place first (a box reduction, then Lanczos), so the full-size decode is the only full-size
        # copy; turned upright afterwards, on the small image (the bound is square, so the order does not matter).
        small.thumbnail((size, size), PILImage.Resampling.LANCZOS, reducing_gap=2.0)
        oriented = ImageOps.exif_transpose(small)
    out = io.BytesIO()
    if transparent is not None:
        oriented.save(out, "WEBP", quality=_WEBP_QUALITY, icc_profile=icc)
    else:
        _to_rgb(oriented).save(out, "JPEG", quality=82, icc_profile=icc)
    return out.getvalue()


def _transparent(image: PILImage.Image) -> PILImage.Image | None:
    """The image as RGBA when some pixel is not opaque, else None."""
    palette_alpha = image.mode == "P" and "transparency" in image.info
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and not palette_alpha:
        return None
    # An RGBA original is used as it is (no full-size copy before the reduction); its alpha band alone is read.
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    low = np.asarray(rgba.getchannel("A")).min()
    return rgba if low < 255 else None


def _eight_bits(image: PILImage.Image) -> PILImage.Image:
    """16- and 32-bit grey as 8-bit grey: Pillow can neither reduce nor convert 16-bit grey to RGB faithfully."""
    if not image.mode.startswith("I"):
        return image
    image.load()
    pixels = np.asarray(image)
    scale = 8 if image.mode.startswith("I;16") else 0
    eight = (pixels >> scale) if scale else np.clip(pixels / 257, 0, 255)
    grey = PILImage.fromarray(eight.astype(np.uint8), "L")
    grey.info = dict(image.info)
    exif = image.getexif()
    if exif:
        grey.info["exif"] = exif.tobytes()
    return grey


def _to_rgb(image: PILImage.Image) -> PILImage.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


@contextmanager
def _one_at_a_time(key: str) -> Iterator[None]:
    """Requests for the same thumbnail make it once: the others wait, then find it stored."""
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        yield
    with _locks_guard:
        if not lock.locked():
            _locks.pop(key, None)


def _stored(storage: Storage, image_id: str, size: int) -> bytes | None:
    """The stored thumbnail, None if it is not made yet; NotFound if it is known that it cannot be."""
    try:
        return storage.get(thumbnail_key(image_id, size))
    except ObjectNotFound:
        pass
    if storage.exists(failure_key(image_id, size)):
        raise NotFound(NOT_AN_IMAGE)
    return None


def image_exists(session: Session, image_id: str) -> bool:
    return session.exec(select(Image.id).where(col(Image.id) == image_id)).first() is not None


def thumbnail_of(
    storage: Storage,
    image_id: str,
    original_key: str,
    size: int,
    max_pixels: int,
    slots: DecodeSlots,
    still_exists: Callable[[], bool],
) -> bytes:
    """The stored thumbnail, made from the original on first use, in a decode slot (503 if none frees up).

    `still_exists` reads the image's row again once something is stored: an image deleted while its thumbnail
    was made loses it here (404), as the delete may have removed its files before this one was written."""
    cached = _stored(storage, image_id, size)
    if cached is not None:
        return cached
    with _one_at_a_time(thumbnail_key(image_id, size)), slots:
        cached = _stored(storage, image_id, size)  # made while this request waited
        if cached is not None:
            return cached
        try:
            original = storage.get(original_key)
        except ObjectNotFound as exc:
            raise NotFound("Original image not found in storage") from exc
        try:
            data = make_thumbnail(original, size, max_pixels)
        except Exception as exc:  # any decoder's error (Pillow raises many kinds): the original is unreadable
            log.warning("no thumbnail for image %s: %s", image_id, exc)
            _store_unless_deleted(storage, failure_key(image_id, size), str(exc)[:500].encode(), still_exists)
            raise NotFound(NOT_AN_IMAGE) from exc
        del original
        _store_unless_deleted(storage, thumbnail_key(image_id, size), data, still_exists)
        return data


def _store_unless_deleted(storage: Storage, key: str, data: bytes, still_exists: Callable[[], bool]) -> None:
    storage.put(key, data)
    if not still_exists():
        storage.delete(key)
        raise NotFound("Image not found")
