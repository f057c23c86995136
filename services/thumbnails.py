"""Small previews of originals, made once and kept in storage beside them: JPEG, or WebP with its transparency for
an original that has some."""

import io

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from imaging import probe_image
from storage.base import ObjectNotFound, Storage

# Bumped when the way thumbnails are made changes, so cached copies (and browsers' ETags) are renewed. 2: a
# transparent original's thumbnail keeps its transparency (WebP); the key no longer names a format.
THUMBNAIL_VERSION = 2
_WEBP_QUALITY = 82


def thumbnail_key(image_id: str, size: int) -> str:
    """Storage key of an image's thumbnail at a size."""
    return f"thumbnails/{image_id}-{size}-v{THUMBNAIL_VERSION}"


def thumbnail_keys(image_id: str, size: int) -> list[str]:
    """Every key a thumbnail of the image may be under: this version's and the first one's (deleted together)."""
    return [thumbnail_key(image_id, size), f"thumbnails/{image_id}-{size}-v1.jpg"]


def thumbnail_media_type(data: bytes) -> str:
    """image/webp for a thumbnail that kept transparency, else image/jpeg."""
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else "image/jpeg"


def etag(image_id: str, size: int) -> str:
    """Originals never change under an id, so the id, size and version name the thumbnail's bytes."""
    return f'"{image_id}-{size}-v{THUMBNAIL_VERSION}"'


def make_thumbnail(data: bytes, size: int, max_pixels: int) -> bytes:
    """An image whose longer side is at most `size`, upright, colour profile kept: a WebP keeping the original's
    transparency when it has any, else a JPEG."""
    probe_image(data, max_pixels)  # refuses pixel bombs before anything is decoded
    with PILImage.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
        icc = image.info.get("icc_profile")
        image.seek(0)
        oriented = ImageOps.exif_transpose(image)
        transparent = _transparent(oriented)
        if transparent is not None:
            # Pillow's resize premultiplies RGBA, so hidden colour does not fringe the edge.
            transparent.thumbnail((size, size), PILImage.Resampling.LANCZOS, reducing_gap=2.0)
            out = io.BytesIO()
            transparent.save(out, "WEBP", quality=_WEBP_QUALITY, icc_profile=icc)
            return out.getvalue()
        oriented.thumbnail((size, size), PILImage.Resampling.LANCZOS, reducing_gap=2.0)
        rgb = _to_rgb(oriented)
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=82, icc_profile=icc)
    return out.getvalue()


def _transparent(image: PILImage.Image) -> PILImage.Image | None:
    """The image as RGBA when some pixel is not opaque, else None."""
    palette_alpha = image.mode == "P" and "transparency" in image.info
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and not palette_alpha:
        return None
    rgba = image.convert("RGBA")
    low = np.asarray(rgba.getchannel("A")).min()
    return rgba if low < 255 else None


def _to_rgb(image: PILImage.Image) -> PILImage.Image:
    if image.mode.startswith("I"):
        # 16-bit grey would turn white in a plain convert("RGB"): scale it to 8 bits first.
        image = image.convert("I").point(lambda value: value / 257).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def thumbnail_of(storage: Storage, image_id: str, original_key: str, size: int, max_pixels: int) -> bytes:
    """The cached thumbnail, made from the original on first use (imaging's InvalidImageError if it is no image)."""
    key = thumbnail_key(image_id, size)
    try:
        return storage.get(key)
    except ObjectNotFound:
        pass
    data = make_thumbnail(storage.get(original_key), size, max_pixels)
    storage.put(key, data)
    return data
