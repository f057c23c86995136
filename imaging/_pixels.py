"""Pixel operations on numpy arrays with OpenCV: each call releases the GIL, so two threads scale."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from functools import cache

import cv2
import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

from imaging._decode import ChannelOrder
from imaging.colour import srgb_profile_bytes, transform_for
from imaging.config import EngineConfig
from imaging.metadata import NO_METADATA, OutputMetadata, jpeg_segments

# Shrinking: Gaussian pyramid halvings (JPEG decoding already does them in the DCT) while 2x or more is left, then a
# 7-tap separable pre-filter and bicubic interpolation whose combined frequency response is fitted to that
# of a Lanczos-3 resize over the whole factor (the reference for a sharp, clean downscale). The pre-filter
# both removes what the output cannot show and restores what the pyramid and cubic interpolation soften,
# so no sharpening pass is needed after shrinking; see docs/imaging.md "Resampling".
_FIT_TAPS = 3  # one side of the symmetric pre-filter: 7 taps
_FIT_POINTS = 129  # frequencies from 0 to the stage's Nyquist
_FIT_STOPBAND_WEIGHT = 3.0  # aliasing matters more than a few percent of passband ripple
_FIT_STEP = 0.01  # factors are rounded to this, so kernels are cached
_KEYS_A = -0.75  # OpenCV's bicubic kernel
_REDUCED_DECODE_POWER = 0.75  # full compensation overshot Lanczos, half fell short of it (training photos)

JPEG_QUALITY = 90
_JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_SAMPLING_FACTOR]
_SAMPLING = {False: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, True: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444}

_ORIENT_OPS = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def resize(pixels: np.ndarray, size: tuple[int, int], decoded_reduced: bool = False) -> np.ndarray:
    """Resize to (width, height): bicubic when enlarging; when shrinking, a Lanczos-like anti-aliased
    reduction (may filter pixels in place if writable). decoded_reduced: the pixels come from a DCT-scaled
    (or box-reduced) decode, whose softening the reduction makes up for."""
    height, width = pixels.shape[:2]
    if (width, height) == size:
        return pixels
    if width <= size[0] and height <= size[1]:
        return cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC)
    halvings = 0
    while pixels.shape[1] > 2 * size[0] and pixels.shape[0] > 2 * size[1]:  # an exact 2x is the fit's own
        pixels = cv2.pyrDown(pixels)
        halvings += 1
    height, width = pixels.shape[:2]
    interpolates = (width, height) != size  # an exact halving leaves nothing for the cubic stage to do
    softened = decoded_reduced and halvings == 0
    kernel_x = shrink_kernel(width / size[0], halvings, interpolates, softened)
    kernel_y = shrink_kernel(height / size[1], halvings, interpolates, softened)
    target = pixels if pixels.flags.writeable else None  # the decoded source is ours to overwrite
    pixels = cv2.sepFilter2D(pixels, -1, kernel_x, kernel_y, dst=target, borderType=cv2.BORDER_REFLECT_101)
    return cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC) if interpolates else pixels


def shrink_kernel(
    scale: float, halvings: int = 0, interpolates: bool = True, decoded_reduced: bool = False
) -> np.ndarray:
    """The 7-tap pre-filter for one axis of a reduction by `scale` (1..2) after `halvings` pyramid halvings
    (or a reduced decode), followed by bicubic interpolation (unless the sizes already match)."""
    steps = round(min(2.0, max(1.0, scale)) / _FIT_STEP)
    return _fitted_kernel(steps, halvings, interpolates, decoded_reduced).copy()


@cache
def _fitted_kernel(steps: int, halvings: int, interpolates: bool, decoded_reduced: bool) -> np.ndarray:
    # Least squares in the frequency domain (cycles per pixel of this stage): pre-filter x cubic x earlier
    # pyramid halvings ~ Lanczos-3 stretched by the remaining scale, with the stop band (what the output
    # cannot show, i.e. what would alias) weighted up. The kernel sums to 1, so flat areas are unchanged.
    scale = steps * _FIT_STEP
    f = np.linspace(0.0, 0.5, _FIT_POINTS)
    before = _response(_keys, 2.0, f) if interpolates else np.ones_like(f)
    for level in range(1, halvings + 1):  # pyrDown's [1 4 6 4 1] / 16 at each finer level
        before = before * np.cos(np.pi * f / 2.0**level) ** 4
    if decoded_reduced:  # libjpeg's scaled IDCT (and a 2x2 box) respond about as cos(pi f / 2), measured;
        before = before * np.cos(np.pi * f / 2.0) ** _REDUCED_DECODE_POWER
    target = _response(_lanczos3, 3.0, f, scale)
    weight = np.where(f > 0.5 / scale, _FIT_STOPBAND_WEIGHT, 1.0)
    taps = np.arange(1, _FIT_TAPS + 1)
    basis = 2.0 * (np.cos(2.0 * np.pi * np.outer(f, taps)) - 1.0) * before[:, None]
    side = np.linalg.lstsq(basis * weight[:, None], (target - before) * weight, rcond=None)[0]
    return np.concatenate([side[::-1], [1.0 - 2.0 * side.sum()], side]).astype(np.float32)


def _keys(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    a = _KEYS_A
    near = (a + 2.0) * x**3 - (a + 3.0) * x**2 + 1.0
    far = a * x**3 - 5.0 * a * x**2 + 8.0 * a * x - 4.0 * a
    return np.asarray(np.where(x <= 1.0, near, np.where(x < 2.0, far, 0.0)))


def _lanczos3(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0))


def _response(
    kernel: Callable[[np.ndarray], np.ndarray], support: float, f: np.ndarray, scale: float = 1.0
) -> np.ndarray:
    """Frequency response of a continuous symmetric kernel stretched by `scale`, by numerical integration."""
    x = np.linspace(-support * scale, support * scale, int(128 * support * scale) + 1)
    values = kernel(x / scale) / scale
    return np.asarray(np.cos(2.0 * np.pi * np.outer(f, x)) @ values * (x[1] - x[0]))


def to_srgb(pixels: np.ndarray, order: ChannelOrder, icc: bytes | None) -> tuple[np.ndarray, ChannelOrder]:
    """Convert from the embedded profile to sRGB (LittleCMS); a no-op without one or when it is sRGB."""
    mode = "L" if order == "L" else "RGB"
    transform = transform_for(icc, mode)
    if transform is None:
        return pixels, order
    height, width = pixels.shape[:2]
    rawmode = "BGR" if order == "BGR" else mode
    image = Image.frombuffer(mode, (width, height), np.ascontiguousarray(pixels), "raw", rawmode, 0, 1)
    return np.asarray(ImageCms.applyTransform(image, transform)), "RGB"


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so the image is displayed upright."""
    op = _ORIENT_OPS.get(orientation)
    return pixels if op is None else op(pixels)


def encode_jpeg(bgr: np.ndarray, full_chroma: bool = False, metadata: OutputMetadata = NO_METADATA) -> bytes:
    """Baseline JPEG, quality 90, 4:2:0 (4:4:4 with full_chroma), with the metadata and an sRGB ICC profile."""
    ok, encoded = cv2.imencode(".jpg", bgr, [*_JPEG_PARAMS, _SAMPLING[full_chroma]])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return _insert_segments(encoded.reshape(-1).data, srgb_profile_bytes(), jpeg_segments(metadata))


def _insert_segments(jpeg: memoryview, icc: bytes, metadata: list[bytes]) -> bytes:
    # OpenCV's encoder cannot embed ICC in every supported version; an APP2 segment is all it takes. The
    # metadata's segments (EXIF, XMP, IPTC) go before it, the entropy-coded data is untouched.
    segment = b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(icc)) + b"ICC_PROFILE\x00\x01\x01" + icc
    position = 2
    if jpeg[2:4].tobytes() == b"\xff\xe0":  # keep JFIF APP0 first, as the JFIF spec requires
        position = 4 + int.from_bytes(jpeg[4:6], "big")
    return b"".join((jpeg[:position], *metadata, segment, jpeg[position:]))


def encode_with_pillow(
    bgr: np.ndarray, alpha: np.ndarray | None, fmt: str, config: EngineConfig, metadata: OutputMetadata = NO_METADATA
) -> bytes:
    """PNG, WebP or AVIF (fmt as Pillow names it), with alpha when given, an sRGB ICC profile, and the metadata's
    EXIF and XMP (these formats have no place for IPTC IIM; its fields live in the XMP of most photos)."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB if alpha is None else cv2.COLOR_BGR2RGBA)
    if alpha is not None:
        rgb[..., 3] = alpha
    image = Image.fromarray(rgb, "RGB" if alpha is None else "RGBA")
    options: dict[str, object] = {"icc_profile": srgb_profile_bytes()}
    if metadata.exif is not None:
        options["exif"] = metadata.exif
    if fmt == "PNG":
        options["compress_level"] = config.png_compress_level
        if metadata.xmp is not None:
            text = PngImagePlugin.PngInfo()
            text.add_itxt("XML:com.adobe.xmp", metadata.xmp.decode("utf-8", "replace"))
            options["pnginfo"] = text
    else:
        if metadata.xmp is not None:
            options["xmp"] = metadata.xmp
        if fmt == "WEBP":
            options |= {"quality": config.webp_quality, "method": config.webp_method}
        else:
            options |= {"quality": config.avif_quality, "speed": config.avif_speed}
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def bleed(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The colour with every fully transparent pixel given the colour of its nearest visible ones (push-pull
    over a pyramid), so resampling, sharpening and the network never drag hidden colour (often black) into
    the visible edge. Visible pixels are unchanged."""
    hidden = alpha == 0
    if not hidden.any() or hidden.all():
        return colour
    shape = colour.shape
    weight = (~hidden).astype(np.float32)
    values = colour.reshape(shape[0], shape[1], -1).astype(np.float32) * weight[..., None]
    levels = [(values, weight)]
    while max(values.shape[:2]) > 1:
        size = (max(1, values.shape[1] // 2), max(1, values.shape[0] // 2))
        values = cv2.resize(values, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0])
        levels.append((values, weight))
    filled = values / np.maximum(weight, 1e-6)[..., None]
    for values, weight in reversed(levels[:-1]):
        height, width = weight.shape
        coarse = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)
        own = np.minimum(weight, 1.0)[..., None]
        filled = values / np.maximum(weight, 1e-6)[..., None] * own + coarse * (1.0 - own)
    out = colour.copy()
    out[hidden] = np.clip(filled + 0.5, 0, 255).astype(np.uint8).reshape(shape)[hidden]
    return out


def resize_premultiplied(
    bgr: np.ndarray, alpha: np.ndarray, size: tuple[int, int], decoded_reduced: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """resize() of colour and alpha together, the colour weighted by its alpha (premultiplied), so a transparent
    neighbour adds nothing to a visible pixel: no dark (or any other) fringes."""
    if bgr.shape[1::-1] == size:
        return bgr, alpha
    weight = alpha.astype(np.float32) * np.float32(1 / 255)
    stacked = np.dstack([bgr.astype(np.float32) * weight[..., None], alpha.astype(np.float32)])
    resized = resize(stacked, size, decoded_reduced)
    out_alpha = np.clip(resized[..., 3], 0.0, 255.0)
    divisor = np.maximum(out_alpha * np.float32(1 / 255), np.float32(1e-6))[..., None]
    colour = np.clip(resized[..., :3] / divisor + 0.5, 0, 255).astype(np.uint8)
    alpha_out = (out_alpha + 0.5).astype(np.uint8)
    return bleed(colour, alpha_out), alpha_out
