"""Colour management: embedded ICC profiles (and HEIF nclx P3) to sRGB, plus the profiles we write."""

from __future__ import annotations

import io
import struct
import threading
from collections import OrderedDict
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageCms

from imaging._source import DECODE_ERRORS

# (x, y) chromaticities.
SRGB_PRIMARIES = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
DISPLAY_P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
D65 = (0.3127, 0.3290)
D50_XYZ = (0.9642, 1.0, 0.8249)

_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])

# H.273 code points that appear in HEIF nclx boxes.
_NCLX_P3_PRIMARIES = 12
_NCLX_SRGB_LIKE_TRANSFER = frozenset({1, 6, 13})

_TRANSFORM_CACHE_SIZE = 16
_PROFILE_ERRORS: tuple[type[BaseException], ...] = (ImageCms.PyCMSError, *DECODE_ERRORS)


@cache
def srgb_profile_bytes() -> bytes:
    """The sRGB ICC profile embedded in every output, with its creation date zeroed so output is stable."""
    raw = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return raw[:24] + bytes(12) + raw[36:]


@cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile_bytes()))


def _xy_to_xyz(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def rgb_to_xyz_matrix(primaries: tuple[tuple[float, float], ...], white: tuple[float, float]) -> np.ndarray:
    """Linear RGB to XYZ matrix (columns are the primaries' XYZ) for the given white point."""
    columns = np.stack([_xy_to_xyz(*p) for p in primaries], axis=1)
    scale = np.linalg.solve(columns, _xy_to_xyz(*white))
    return columns * scale


def srgb_decode(values: np.ndarray) -> np.ndarray:
    """sRGB transfer function: encoded 0..1 to linear 0..1."""
    v = np.asarray(values, dtype=np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def matrix_shaper_profile(
    primaries: tuple[tuple[float, float], ...], white: tuple[float, float], description: str
) -> bytes:
    """A minimal ICC v2 display profile with the sRGB tone curve and the given primaries."""
    d65_to_d50 = _bradford(_xy_to_xyz(*white), np.array(D50_XYZ))
    colorants = d65_to_d50 @ rgb_to_xyz_matrix(primaries, white)
    curve = np.round(srgb_decode(np.linspace(0.0, 1.0, 1024)) * 65535).astype(">u2").tobytes()
    trc = b"curv" + bytes(4) + struct.pack(">I", 1024) + curve
    text = description.encode("ascii") + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 3 + 67)
    tags = [
        (b"desc", desc),
        (b"cprt", b"text" + bytes(4) + b"No copyright, use freely\0"),
        (b"wtpt", _xyz_tag(D50_XYZ)),
        (b"rXYZ", _xyz_tag(colorants[:, 0])),
        (b"gXYZ", _xyz_tag(colorants[:, 1])),
        (b"bXYZ", _xyz_tag(colorants[:, 2])),
        (b"rTRC", trc),
        (b"gTRC", trc),
        (b"bTRC", trc),
    ]
    return _assemble_profile(tags)


def _bradford(src_white: np.ndarray, dst_white: np.ndarray) -> np.ndarray:
    cone_ratio = (_BRADFORD @ dst_white) / (_BRADFORD @ src_white)
    return np.asarray(np.linalg.inv(_BRADFORD) @ np.diag(cone_ratio) @ _BRADFORD)


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(float(value) * 65536))


def _xyz_tag(xyz: Any) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15f16(c) for c in xyz)


def _assemble_profile(tags: list[tuple[bytes, bytes]]) -> bytes:
    data_start = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, payload in tags:
        body += bytes(-(data_start + len(body)) % 4)  # tag data must be 4-byte aligned
        table += signature + struct.pack(">II", data_start + len(body), len(payload))
        body += payload
    size = data_start + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + b"".join(_s15f16(c) for c in D50_XYZ)
        + bytes(4 + 16 + 28)
    )
    return header + struct.pack(">I", len(tags)) + table + body


@cache
def display_p3_profile_bytes() -> bytes:
    """Display P3 (P3 primaries, D65, sRGB curve): what phones mean by an nclx 'P3' colour box."""
    return matrix_shaper_profile(DISPLAY_P3_PRIMARIES, D65, "Display P3")


def source_profile(info: Mapping[Any, Any]) -> bytes | None:
    """The embedded ICC profile, or a P3 profile for HEIF/AVIF images tagged P3 through nclx."""
    icc = info.get("icc_profile")
    if isinstance(icc, bytes) and icc:
        return icc
    nclx = info.get("nclx_profile")
    if (
        isinstance(nclx, dict)
        and nclx.get("color_primaries") == _NCLX_P3_PRIMARIES
        and nclx.get("transfer_characteristics") in _NCLX_SRGB_LIKE_TRANSFER
    ):
        return display_p3_profile_bytes()
    return None


class _TransformCache:
    """Small thread-safe LRU of LCMS transforms; building one costs a few ms, applying is shared."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[bytes, str], ImageCms.ImageCmsTransform | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
        key = (icc, mode)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        transform = _build_transform(icc, mode)
        with self._lock:
            self._items[key] = transform
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return transform


def _build_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if mode == "RGB" and _is_srgb(profile):
            return None
        # NOCACHE makes one transform safe to apply from several threads at once.
        return ImageCms.buildTransform(
            profile,
            _srgb_profile(),
            mode,
            "RGB",
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            flags=ImageCms.Flags.NOCACHE,
        )
    except _PROFILE_ERRORS:
        # A broken or mismatched profile: browsers fall back to sRGB, and so do we.
        return None


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    # Converting sRGB-to-sRGB costs ~15 ns/pixel for nothing; cameras embed sRGB all the time.
    core = profile.profile
    if not core.is_matrix_shaper or "srgb" not in (core.profile_description or "").lower():
        return False
    expected = _srgb_profile().profile
    pairs = [
        (core.red_colorant, expected.red_colorant),
        (core.green_colorant, expected.green_colorant),
        (core.blue_colorant, expected.blue_colorant),
    ]
    for got, want in pairs:
        if got is None or want is None:
            return False
        if any(abs(a - b) > 0.003 for a, b in zip(got[0], want[0], strict=True)):
            return False
    return True


_TRANSFORMS = _TransformCache(_TRANSFORM_CACHE_SIZE)


def transform_for(icc: bytes | None, mode: str) -> ImageCms.ImageCmsTransform | None:
    """Cached transform from the profile to sRGB for a Pillow mode, or None when nothing is to be done."""
    if icc is None:
        return None
    return _TRANSFORMS.get(icc, mode)


def convert_image_to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image | None:
    """Apply the profile-to-sRGB transform to a Pillow image; None when there is nothing to convert."""
    transform = transform_for(icc, image.mode)
    if transform is None:
        return None
    return ImageCms.applyTransform(image, transform)
