"""The engine's settings: validated once, where they are built."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.config import Settings
from imaging import EngineConfig


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
        {"sr_gpu_id": -2},
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
    assert config.sr_gpu_id == -1 and config.sr_threads == 1 and config.sr_tile_size == 128


def test_settings_build_an_engine_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENHANCE_ENGINE", "sr")
    monkeypatch.setenv("SR_TILE_SIZE", "64")
    monkeypatch.setenv("SR_GPU_ID", "0")
    monkeypatch.setenv("SR_NOISE_AUTO", "false")
    settings = Settings(_env_file=None)
    config = EngineConfig(
        engine=settings.enhance_engine,
        sr_model=settings.sr_model,
        sr_min_scale=settings.sr_min_scale,
        sr_tile_size=settings.sr_tile_size,
        sr_threads=settings.sr_threads,
        sr_gpu_id=settings.sr_gpu_id,
        sr_noise=settings.sr_noise,
        sr_noise_auto=settings.sr_noise_auto,
    )
    assert (config.engine, config.sr_tile_size, config.sr_gpu_id, config.sr_noise_auto) == ("sr", 64, 0, False)
    assert EngineConfig().sr_noise_auto  # the source is read unless told otherwise


def test_settings_refuse_an_unknown_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENHANCE_ENGINE", "magic")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
