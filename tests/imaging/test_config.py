"""The engine's settings: validated once, where they are built."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from pydantic import ValidationError

from core.config import Settings
from core.contracts import RetrySettings
from imaging import EngineConfig
from services.batches import RETRY_SETTING_OF, engine_config, retry_settings


@pytest.mark.parametrize(
    "bad",
    [
        {"engine": "gpu"},
        {"sr_model": "realesrgan"},
        {"sr_min_scale": 1.0},
        {"sr_min_scale": 0.5},
        {"sr_tile_size": 16},
        {"sr_tile_size": 100.5},
        {"sr_threads": 0},
        {"sr_threads": True},
        {"sr_gpu_id": -1},  # the CPU is SR_DEVICE=cpu
        {"sr_runtime": "tensorrt"},
        {"sr_device": "tpu"},
        {"sr_noise": 4},
        {"sr_noise_auto": "yes"},
    ],
)
def test_bad_values_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        EngineConfig(**bad)


def test_defaults_are_the_measured_ones() -> None:
    config = EngineConfig()
    assert (config.engine, config.sr_model, config.sr_min_scale, config.sr_noise) == ("auto", "upconv_7_photo", 1.5, -1)
    assert config.sr_threads == 1 and config.sr_tile_size == 64
    assert (config.sr_runtime, config.sr_device, config.sr_gpu_id) == ("ncnn", "cpu", 0)


@pytest.mark.parametrize(
    ("runtime", "device", "error"),
    [
        ("ncnn", "cuda", "sr_device must be cpu or vulkan with sr_runtime ncnn"),
        ("onnxruntime", "vulkan", "sr_device must be cpu or cuda with sr_runtime onnxruntime"),
    ],
)
def test_a_device_its_runtime_cannot_drive_is_refused(runtime: str, device: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        EngineConfig(sr_runtime=runtime, sr_device=device)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("runtime", "device"), [("ncnn", "cpu"), ("ncnn", "vulkan"), ("onnxruntime", "cpu"), ("onnxruntime", "cuda")]
)
def test_every_runtime_and_device_pair_is_accepted(runtime: str, device: str) -> None:
    config = EngineConfig(sr_runtime=runtime, sr_device=device, sr_gpu_id=1)  # type: ignore[arg-type]
    assert (config.sr_runtime, config.sr_device) == (runtime, device)


def test_settings_build_an_engine_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENHANCE_ENGINE", "sr")
    monkeypatch.setenv("SR_TILE_SIZE", "64")
    monkeypatch.setenv("SR_GPU_ID", "1")
    monkeypatch.setenv("SR_RUNTIME", "onnxruntime")
    monkeypatch.setenv("SR_DEVICE", "cuda")
    monkeypatch.setenv("SR_NOISE_AUTO", "false")
    settings = Settings(_env_file=None)
    config = engine_config(settings)
    assert (config.engine, config.sr_tile_size, config.sr_gpu_id) == ("sr", 64, 1)
    assert (config.sr_runtime, config.sr_device, config.sr_noise_auto) == ("onnxruntime", "cuda", False)
    assert EngineConfig().sr_noise_auto  # the source is read unless told otherwise


def test_unset_settings_keep_the_engines_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for item in fields(EngineConfig):
        monkeypatch.delenv("ENHANCE_ENGINE" if item.name == "engine" else item.name.upper(), raising=False)
    assert engine_config(Settings(_env_file=None)) == EngineConfig()


def test_every_config_field_has_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The workflow's retry policy comes from the settings, field by field, and a setting reaches its field."""
    monkeypatch.setenv("ACTIVITY_INITIAL_RETRY_SECONDS", "0.25")
    monkeypatch.setenv("SR_ACTIVITY_START_TO_CLOSE_SECONDS", "900")
    retry = retry_settings(Settings(_env_file=None))
    assert (retry.initial_interval_seconds, retry.sr_start_to_close_seconds) == (0.25, 900)
    assert set(RETRY_SETTING_OF) == {item.name for item in fields(RetrySettings)}


@pytest.mark.parametrize(
    ("variable", "value"), [("ENHANCE_ENGINE", "magic"), ("SR_RUNTIME", "tvm"), ("SR_DEVICE", "gpu")]
)
def test_settings_refuse_an_unknown_choice(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
