"""A process that enhances refuses to start when its super-resolution settings cannot run on this machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import StartupRefused
from imaging import sr
from services.batches import verify_super_resolution
from tests.reliability.processes import WORKER_SCRIPT, service_env


def _cuda_available() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _settings(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


@pytest.mark.usefixtures("sr_runtime")
def test_cuda_requested_without_cuda_refuses_to_start_even_in_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    if _cuda_available():
        pytest.skip("this machine's ONNX Runtime has CUDA")
    settings = _settings(monkeypatch, ENHANCE_ENGINE="auto", SR_RUNTIME="onnxruntime", SR_DEVICE="cuda")
    with pytest.raises(StartupRefused, match="SR_DEVICE=cuda but the installed ONNX Runtime has no CUDA provider"):
        verify_super_resolution(settings)


@pytest.mark.usefixtures("sr_runtime")
def test_vulkan_requested_without_a_device_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import ncnn

    settings = _settings(monkeypatch, ENHANCE_ENGINE="sr", SR_DEVICE="vulkan", SR_GPU_ID="0")
    if ncnn.get_gpu_count() > 0:
        pytest.skip("this machine has a Vulkan device")
    with pytest.raises(StartupRefused, match="SR_DEVICE=vulkan but ncnn sees 0 Vulkan device"):
        verify_super_resolution(settings)


@pytest.mark.usefixtures("sr_runtime")
@pytest.mark.parametrize("runtime", ["ncnn", "onnxruntime"])
def test_a_cpu_runtime_passes_the_start_up_check(monkeypatch: pytest.MonkeyPatch, runtime: str) -> None:
    verify_super_resolution(_settings(monkeypatch, ENHANCE_ENGINE="sr", SR_RUNTIME=runtime))


def test_engine_sr_without_the_runtime_refuses_and_auto_on_the_cpu_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sr, "load_network", _missing_runtime)
    with pytest.raises(StartupRefused, match="not installed"):
        verify_super_resolution(_settings(monkeypatch, ENHANCE_ENGINE="sr"))
    verify_super_resolution(_settings(monkeypatch, ENHANCE_ENGINE="auto"))  # falls back to classic per image
    verify_super_resolution(
        _settings(monkeypatch, ENHANCE_ENGINE="classic", SR_DEVICE="cuda", SR_RUNTIME="onnxruntime")
    )


def _missing_runtime(config: object) -> object:
    raise sr.SuperResolutionUnavailableError("the Python package ncnn is not installed")


@pytest.mark.usefixtures("sr_runtime")
def test_the_worker_process_refuses_to_start_with_cuda_it_does_not_have(tmp_path: Path) -> None:
    if _cuda_available():
        pytest.skip("this machine's ONNX Runtime has CUDA")
    env = service_env(
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        storage_dir=tmp_path / "storage",
        temporal_address="127.0.0.1:1",
        sr_runtime="onnxruntime",
        sr_device="cuda",
    )
    upgraded = subprocess.run(
        [sys.executable, "-m", "cli", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    worker = subprocess.run(
        [sys.executable, str(WORKER_SCRIPT)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert worker.returncode != 0
    assert "worker refused to start" in worker.stderr and "no CUDA provider" in worker.stderr, worker.stderr
