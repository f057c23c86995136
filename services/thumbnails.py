"""Small JPEG previews of originals, made once and kept in storage beside them."""

import io

from PIL import Image as PILImage
from PIL import ImageOps

from imaging import probe_image
from storage.local import LocalStorage, ObjectNotFound

# Bumped when the way thumbnails are made changes, so cached copies (and browsers' ETags) are renewed.
THUMBNAIL_VERSION = 1


def thumbnail_key(image_id: str, size: int) -> str:
    """Storage key of an image's thumbnail at a size."""
    return f"thumbnails/{image_id}-{size}-v{THUMBNAIL_VERSION}.jpg"


def etag(image_id: str, size: int) -> str:
    """Originals never change under an id, so the id, size and version name the thumbnail's bytes."""
    return f'"{image_id}-{size}-v{THUMBNAIL_VERSION}"'


def make_thumbnail(data: bytes, size: int, max_pixels: int) -> bytes:
    """A JPEG whose longer side is at most `size`, upright, alpha flattened on white, colour profile kept."""
    probe_image(data, max_pixels)  # refuses pixel bombs before anything is decoded
    with PILImage.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
        icc = image.info.get("icc_profile")
        image.seek(0)
        oriented = ImageOps.exif_transpose(image)
        oriented.thumbnail((size, size), PILImage.Resampling.LANCZOS, reducing_gap=2.0)
        rgb = _to_rgb(oriented)
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=82, icc_profile=icc)
    return out.getvalue()


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


def thumbnail_of(storage: LocalStorage, image_id: str, original_key: str, size: int, max_pixels: int) -> bytes:
    """The cached thumbnail, made from the original on first use (imaging's InvalidImageError if it is no image)."""
    key = thumbnail_key(image_id, size)
    try:
        return storage.get(key)
    except ObjectNotFound:
        pass
    data = make_thumbnail(storage.get(original_key), size, max_pixels)
    storage.put(key, data)
    return data
