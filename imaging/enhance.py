"""The enhancement engine: original photo bytes in, tier-sized sRGB image out (JPEG unless asked otherwise), with
the source's metadata carried over (imaging/metadata.py)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Literal

import cv2
import numpy as np

from imaging import _pixels, finish, restoration, sr
from imaging._decode import ChannelOrder, Source, decode, fit_long_side
from imaging._source import DEFAULT_MAX_PIXELS, oriented
from imaging.config import DEFAULT_CONFIG, DEFAULT_OUTPUT, EngineConfig, Output, wants_super_resolution
from imaging.metadata import NO_METADATA, OutputMetadata, carry_over

# Without a config the engine stays classic: the network is opted into by the caller (from its settings),
# so a library call never turns into minutes of CPU by surprise.
_NO_CONFIG = EngineConfig(engine="classic")


Progress = Callable[[int, int], None]
EngineUsed = Literal["classic", "sr"]
# Pillow's names of the formats written, by the name a caller asks for.
_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}
# What "auto" writes for a source with transparency: lossless, and read by everything.
_AUTO_WITH_ALPHA = "png"

_MAX_LONG_SIDE = 16_384  # JPEG's own limit is 65 535; nothing we sell is near this
_MIN_SOURCE_USM_SIGMA = 0.6  # below this a Gaussian is too coarsely sampled to stand in for the output one
_CLASSIC_STEPS = 2  # enhance, encode (reported after decoding)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnhancedImage:
    """An encoded output image; len(data) is its size in bytes; engine says which path made it; notes say what
    of the source's metadata was dropped because it could not be read or kept (for the caller's log)."""

    data: bytes
    width: int
    height: int
    format: str = "JPEG"
    engine: EngineUsed = "classic"
    notes: tuple[str, ...] = ()


def needs_super_resolution(width: int, height: int, long_side: int, config: EngineConfig = DEFAULT_CONFIG) -> bool:
    """Whether enhance_image would run the SR network for a source of this size; no decoding, for routing.

    width and height may be as stored or as displayed (the long side is the same)."""
    if not wants_super_resolution(width, height, long_side, config):
        return False
    return config.engine == "sr" or _sr_usable()


@cache
def _sr_usable() -> bool:
    reason = sr.unavailable_reason()
    if reason is not None:
        _log.warning("Super-resolution is not available, enlarging with the classic engine: %s", reason)
    return reason is None


def enhance_image(
    data: bytes,
    long_side: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    config: EngineConfig | None = None,
    on_progress: Progress | None = None,
    output: Output = DEFAULT_OUTPUT,
) -> EnhancedImage:
    """Decode, orient, colour-manage, resize to long_side, finish and encode; thread-safe, no I/O.

    config: the engine's knobs (imaging.EngineConfig); None means classic, no super-resolution.
    output: the format (JPEG by default; PNG, WebP and AVIF keep transparency) and the metadata carried over.
    on_progress(done, total), if given, is called from this thread once decoding is done (done=0), after
    every step (every SR tile), and at the end (done=total). Whatever it raises aborts the enhancement and
    propagates unchanged; the engine's buffers are released on the way out.
    """
    if isinstance(long_side, bool) or not isinstance(long_side, int) or not 1 <= long_side <= _MAX_LONG_SIDE:
        raise ValueError(f"long_side must be an integer in 1..{_MAX_LONG_SIDE}, got {long_side!r}")
    try:
        return _enhance(data, long_side, max_pixels, config or _NO_CONFIG, on_progress or _no_progress, output)
    except BaseException as exc:
        # A traceback keeps every frame's locals, full-size pixel buffers included, alive for as long as the
        # caller keeps the exception (a cancel may be held for a while); drop them, keep the frames' lines.
        traceback.clear_frames(exc.__traceback__)
        raise


def _no_progress(done: int, total: int) -> None:
    """The default callback."""


def _enhance(
    data: bytes, long_side: int, max_pixels: int, config: EngineConfig, report: Progress, output: Output
) -> EnhancedImage:
    # One pixel more than needed: a DCT reduction to exactly the output size would leave nothing for the
    # resampler's fit (and lose the finest detail a Lanczos resize keeps); other sizes decode as before.
    source = decode(data, max_pixels, long_side + 1, keep_alpha=output.format != "jpeg")
    pixels, order, icc, orientation, alpha = source.pixels, source.order, source.icc, source.orientation, source.alpha
    # Work in stored (unrotated) coordinates until orienting: the long side does not depend on rotation.
    stored_target = fit_long_side(source.stored_size, long_side)
    use_sr = needs_super_resolution(*source.stored_size, long_side, config)
    reduced = (pixels.shape[1], pixels.shape[0]) != source.stored_size  # a DCT-scaled (or box-reduced) decode
    output_size = oriented(stored_target, orientation)
    encoding = _Encoding(_written_format(output, alpha is not None), config, _metadata(source, output_size, output))
    del source  # each full-size buffer must be freed as soon as the next one exists: peak RSS per worker
    if alpha is not None:
        pixels = _pixels.bleed(pixels, alpha)  # hidden colour must not reach the visible edge
    if use_sr:
        noise = _noise_level(data, pixels, order, config)
        sr_config = replace(config, sr_noise=noise)
        return _enhance_sr(pixels, alpha, order, icc, orientation, output_size, sr_config, report, encoding)
    if alpha is not None:
        return _enhance_with_alpha(pixels, alpha, order, icc, orientation, output_size, reduced, report, encoding)
    report(0, _CLASSIC_STEPS)
    # Pointwise colour work and rotation run on whichever is smaller, the decoded source or the output.
    shrinking = pixels.shape[0] * pixels.shape[1] > output_size[0] * output_size[1]
    if shrinking:
        pixels = _pixels.resize(pixels, stored_target, reduced)
    pixels, order = _pixels.to_srgb(pixels, order, icc)
    pixels = _pixels.orient(finish.to_bgr(pixels, order), orientation)
    if not shrinking:  # the shrink is already as sharp as a Lanczos resize: nothing to sharpen after it
        pixels = _sharpen_and_enlarge(pixels, output_size)
    report(1, _CLASSIC_STEPS)
    image = encoding.encode(pixels, None, "classic")
    report(_CLASSIC_STEPS, _CLASSIC_STEPS)
    return image


@dataclass(frozen=True)
class _Encoding:
    """How the output is written: its format (as Pillow names it), the encoders' knobs, the metadata."""

    format: str
    config: EngineConfig
    metadata: OutputMetadata

    def encode(self, bgr: np.ndarray, alpha: np.ndarray | None, engine: EngineUsed) -> EnhancedImage:
        if self.format == "JPEG":
            data = _pixels.encode_jpeg(bgr, finish.wants_full_chroma(bgr), self.metadata)
        else:
            data = _pixels.encode_with_pillow(bgr, alpha, self.format, self.config, self.metadata)
        height, width = bgr.shape[:2]
        return EnhancedImage(data, width, height, self.format, engine, self.metadata.notes)


def _written_format(output: Output, has_alpha: bool) -> str:
    if output.format == "auto":
        return _FORMATS[_AUTO_WITH_ALPHA] if has_alpha else "JPEG"
    return _FORMATS[output.format]


def _metadata(source: Source, output_size: tuple[int, int], output: Output) -> OutputMetadata:
    if not output.metadata:
        return NO_METADATA
    return carry_over(source.metadata, output_size, output.keep_location)


def _enhance_with_alpha(
    pixels: np.ndarray,
    alpha: np.ndarray,
    order: ChannelOrder,
    icc: bytes | None,
    orientation: int,
    output_size: tuple[int, int],
    reduced: bool,
    report: Progress,
    encoding: _Encoding,
) -> EnhancedImage:
    """The classic path for a source with transparency: colour and alpha resampled together, premultiplied."""
    report(0, _CLASSIC_STEPS)
    pixels, order = _pixels.to_srgb(pixels, order, icc)
    pixels = _pixels.orient(finish.to_bgr(pixels, order), orientation)
    alpha = _pixels.orient(alpha, orientation)
    enlarging = pixels.shape[0] * pixels.shape[1] < output_size[0] * output_size[1]
    pixels, alpha = _pixels.resize_premultiplied(pixels, alpha, output_size, reduced)
    if enlarging:  # as without alpha: a shrink is already sharp, an enlargement is sharpened at the output size
        finish.sharpen_in_place(pixels)
    report(1, _CLASSIC_STEPS)
    image = encoding.encode(pixels, alpha, "classic")
    report(_CLASSIC_STEPS, _CLASSIC_STEPS)
    return image


def _enhance_sr(
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    order: ChannelOrder,
    icc: bytes | None,
    orientation: int,
    output_size: tuple[int, int],
    config: EngineConfig,
    report: Progress,
    encoding: _Encoding,
) -> EnhancedImage:
    # No sharpening after the network: its output is already sharp, and an unsharp mask on top lowers
    # fidelity (measured). The denoising level is chosen per image from what the source says about itself.
    height, width = pixels.shape[:2]
    passes = sr.plan_passes(max(width, height), max(output_size), config.sr_min_scale)
    total = sr.count_tiles(width, height, passes, config.sr_tile_size) + 1
    done = 0
    report(done, total)

    def after_tile() -> None:
        nonlocal done
        done += 1
        report(done, total)

    gray = order == "L"
    pixels, order = _pixels.to_srgb(pixels, order, icc)
    pixels = _pixels.orient(finish.to_bgr(pixels, order), orientation)
    enlarged = sr.upscale(pixels, passes, config, after_tile)
    if config.sr_noise < 0:  # a denoised enlargement must not take the source's noise and blocks back
        finish.restore_source_tone(pixels, enlarged)
        finish.smooth_flat_areas(pixels, enlarged)
    del pixels
    pixels = _pixels.resize(enlarged, output_size)
    del enlarged
    if gray:  # the network is RGB and may tint a gray picture by a level or two
        pixels = cv2.cvtColor(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if alpha is not None:  # the network enlarges the colour (bled under the transparent pixels); alpha follows
        alpha = _pixels.resize(_pixels.orient(alpha, orientation), output_size)
    image = encoding.encode(pixels, alpha, "sr")
    report(total, total)
    return image


def _noise_level(data: bytes, pixels: np.ndarray, order: ChannelOrder, config: EngineConfig) -> int:
    """The network's denoising level for this source: read from its JPEG tables and its colour noise."""
    if not config.sr_noise_auto:
        return config.sr_noise
    sigma = restoration.noise_sigma(pixels if order == "BGR" else finish.to_bgr(pixels, order))
    return restoration.sr_noise_level(restoration.jpeg_quality(data), sigma, config.sr_noise)


def _sharpen_and_enlarge(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if pixels.shape[1::-1] == size:
        return pixels  # nothing was resampled, so nothing was softened: sharpening would only add grain
    # Blur and interpolation commute, so the output-scale unsharp mask can run on the smaller source with
    # its radius scaled down, as long as that radius is still well sampled there.
    source_sigma = finish.USM_SIGMA * pixels.shape[0] / size[1]
    if source_sigma >= _MIN_SOURCE_USM_SIGMA:
        finish.sharpen_in_place(pixels, source_sigma)
        return _pixels.resize(pixels, size)
    pixels = _pixels.resize(pixels, size)
    finish.sharpen_in_place(pixels)
    return pixels
