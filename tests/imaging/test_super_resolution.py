"""Super-resolution: routing rule, tiling, progress and cancellation, exact sizes, and that it beats bicubic.

Every network run here is on images of a few dozen pixels (milliseconds); the speed and the full-size
quality figures are in bench/results/.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from imaging import (
    EngineConfig,
    SuperResolutionUnavailableError,
    enhance_image,
    needs_super_resolution,
    sr,
)
from imaging import enhance as enhance_module
from tests.imaging.images import decoded, encode, with_orientation

pytestmark = pytest.mark.usefixtures("sr_runtime")
PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "photos"
SR = EngineConfig(engine="sr", sr_tile_size=32)


def _photo_crop(size: int) -> np.ndarray:
    """A size x size RGB crop of a real photo (detail a network can restore)."""
    with Image.open(PHOTOS / "astronaut.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(pixels[100 : 100 + size, 150 : 150 + size])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * float(np.log10(255**2 / mse))


@pytest.mark.parametrize(
    ("size", "long_side", "config", "expected"),
    [
        ((100, 60), 149, SR, False),  # 1.49x: below the threshold
        ((100, 60), 150, SR, True),  # exactly 1.5x
        ((60, 100), 150, SR, True),  # portrait: the long side counts
        ((100, 60), 400, EngineConfig(engine="classic"), False),
        ((100, 60), 400, EngineConfig(engine="auto"), True),  # the runtime is installed (fixture)
        ((100, 60), 190, EngineConfig(engine="sr", sr_min_scale=2.0), False),
        ((3000, 2000), 1024, SR, False),  # shrinking
    ],
)
def test_routing_threshold(size: tuple[int, int], long_side: int, config: EngineConfig, expected: bool) -> None:
    assert needs_super_resolution(*size, long_side, config) is expected


def test_the_routing_rule_is_what_enhance_does() -> None:
    data = encode(_photo_crop(40), "PNG")
    assert enhance_image(data, 59, config=SR).engine == "classic"  # 1.475x
    assert enhance_image(data, 60, config=SR).engine == "sr"


@pytest.mark.parametrize(
    ("source", "target", "passes"),
    [(100, 150, 1), (100, 200, 1), (100, 299, 1), (100, 300, 2), (1000, 4096, 2), (500, 4096, 3), (2730, 4096, 1)],
)
def test_passes_continue_while_the_threshold_is_left(source: int, target: int, passes: int) -> None:
    assert sr.plan_passes(source, target, 1.5) == passes


@pytest.mark.parametrize(("width", "height", "long_side"), [(48, 48, 96), (47, 31, 100), (31, 47, 100), (40, 7, 130)])
def test_output_has_exactly_the_tier_size(width: int, height: int, long_side: int) -> None:
    source = cv2.resize(_photo_crop(64), (width, height), interpolation=cv2.INTER_AREA)
    result = enhance_image(encode(source, "PNG"), long_side, config=SR)
    assert result.engine == "sr"
    scale = long_side / max(width, height)
    assert max(result.width, result.height) == long_side
    assert abs(result.width - width * scale) <= 1 and abs(result.height - height * scale) <= 1
    assert decoded(result.data).shape[:2] == (result.height, result.width)


def test_orientation_is_applied_on_the_sr_path() -> None:
    stored = _photo_crop(48)[:, :40]  # 40 wide, 48 high as stored; orientation 6 shows it 48 x 40
    result = enhance_image(with_orientation(stored, 6), 96, config=SR)
    assert (result.width, result.height) == (96, 80)
    expected = cv2.resize(np.rot90(stored, -1), (96, 80), interpolation=cv2.INTER_CUBIC)
    assert _psnr(decoded(result.data), expected) > 25  # rotated the right way (the wrong way scores ~12)


def test_tiles_join_seamlessly() -> None:
    pixels = _photo_crop(72)
    one_tile = sr.upscale(pixels.copy(), 1, EngineConfig(engine="sr", sr_tile_size=128), lambda: None)
    many = sr.upscale(pixels.copy(), 1, EngineConfig(engine="sr", sr_tile_size=32), lambda: None)
    assert one_tile.shape == many.shape == (144, 144, 3)
    assert np.abs(one_tile.astype(int) - many).max() <= 2  # float rounding only; a seam would be tens of levels


def test_beats_bicubic_on_a_real_photo() -> None:
    original = _photo_crop(96)
    small = cv2.resize(original, (48, 48), interpolation=cv2.INTER_AREA)
    result = decoded(enhance_image(encode(small, "PNG"), 96, config=SR).data)
    bicubic = cv2.resize(small, (96, 96), interpolation=cv2.INTER_CUBIC)
    assert _psnr(original, result) > _psnr(original, bicubic) + 1.0


def test_gray_stays_gray() -> None:
    gray = cv2.cvtColor(_photo_crop(48), cv2.COLOR_RGB2GRAY)
    pixels = decoded(enhance_image(encode(gray, "PNG"), 96, config=SR).data).astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() <= 3


def test_progress_is_reported_before_the_first_tile_and_after_every_tile() -> None:
    calls: list[tuple[int, int]] = []
    enhance_image(encode(_photo_crop(48), "PNG"), 96, config=SR, on_progress=lambda d, t: calls.append((d, t)))
    tiles = 4  # 48 x 48 in 32-px tiles
    assert calls == [(done, tiles + 1) for done in range(tiles + 2)]


def test_classic_progress_has_a_few_steps() -> None:
    calls: list[tuple[int, int]] = []
    enhance_image(encode(_photo_crop(48), "PNG"), 64, on_progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 2), (1, 2), (2, 2)]


class _Cancelled(Exception):
    pass


def test_an_exception_from_the_callback_aborts_between_tiles_and_propagates_unchanged() -> None:
    raised = _Cancelled("cancel")
    calls: list[int] = []

    def on_progress(done: int, total: int) -> None:
        calls.append(done)
        if done == 2:
            raise raised

    data = encode(_photo_crop(48), "PNG")
    with pytest.raises(_Cancelled) as caught:
        enhance_image(data, 96, config=SR, on_progress=on_progress)
    assert caught.value is raised
    assert calls == [0, 1, 2]  # no tile ran after the raise


def test_an_aborted_enhancement_leaves_no_buffers_behind() -> None:
    # A held exception must not keep the pass's output (here 512 x 512 x 3 = 768 KB) alive via its traceback.
    data = encode(cv2.resize(_photo_crop(128), (256, 256)), "PNG")

    def on_progress(done: int, total: int) -> None:
        if done == 3:
            raise _Cancelled

    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        with pytest.raises(_Cancelled) as caught:
            enhance_image(data, 512, config=EngineConfig(engine="sr", sr_tile_size=64), on_progress=on_progress)
        held = caught.value  # the caller keeps the exception, as a cancelled activity might
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert held.__traceback__ is not None
    assert retained < 256 * 1024


def test_engine_sr_without_the_runtime_fails_loudly_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulates a machine without libvulkan/libomp: the import of the native module would fail.
    monkeypatch.setattr(sr, "_runtime", lambda: (None, None, "ImportError: libvulkan.so.1"))
    monkeypatch.setattr(enhance_module, "_sr_usable", lambda: False)
    data = encode(_photo_crop(48), "PNG")
    with pytest.raises(SuperResolutionUnavailableError, match="libvulkan1 and libomp5"):
        enhance_image(data, 96, config=SR)
    assert not needs_super_resolution(48, 48, 96, EngineConfig(engine="auto"))
    assert enhance_image(data, 96, config=EngineConfig(engine="auto")).engine == "classic"


def test_a_vulkan_device_runs_the_same_network() -> None:
    # Any Vulkan device will do, Mesa's software one included; without one (the usual CI) there is nothing to run.
    module, _ = sr.require_runtime()
    if module.get_gpu_count() < 1:
        pytest.skip("no Vulkan device")
    data = encode(_photo_crop(48), "PNG")
    on_cpu = decoded(enhance_image(data, 96, config=SR).data).astype(int)
    on_gpu = decoded(enhance_image(data, 96, config=EngineConfig(engine="sr", sr_tile_size=32, sr_gpu_id=0)).data)
    assert np.abs(on_cpu - on_gpu).mean() < 1.5  # fp16 on the device: close, not bit-equal
