"""Image enhancement engine: validation (probe_image) and tier enhancement (enhance_image)."""

import warnings

import cv2
import pillow_heif
from PIL import Image

# Parallelism comes from running one image per worker thread; OpenCV's own pool would oversubscribe.
cv2.setNumThreads(1)
pillow_heif.register_heif_opener()
# probe_image and enhance_image enforce their own pixel limit with a clear error; Pillow's warning for
# 89-179 MP headers would only be log noise in front of that refusal.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

from imaging.config import OUTPUT_FORMATS, EngineConfig, Output, OutputFormat  # noqa: E402
from imaging.enhance import EnhancedImage, Progress, enhance_image, needs_super_resolution  # noqa: E402
from imaging.errors import InvalidImageError  # noqa: E402
from imaging.probe import ImageInfo, probe_image  # noqa: E402
from imaging.processes import EngineProcessError, ProcessLimits, SuperResolutionProcesses  # noqa: E402
from imaging.sr import SuperResolutionUnavailableError  # noqa: E402

__all__ = [
    "EngineConfig",
    "EngineProcessError",
    "EnhancedImage",
    "ImageInfo",
    "InvalidImageError",
    "OUTPUT_FORMATS",
    "Output",
    "OutputFormat",
    "ProcessLimits",
    "Progress",
    "SuperResolutionProcesses",
    "SuperResolutionUnavailableError",
    "enhance_image",
    "needs_super_resolution",
    "probe_image",
]
