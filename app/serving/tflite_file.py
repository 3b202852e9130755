"""A `.tflite` flatbuffer as the serving core sees it: its signature, tensor indices and quantization (LiteRT only).

The signature comes from the flatbuffer's one SignatureDef (as written by `python -m app.cli optimize` and by
TensorFlow's SavedModel converter), else from its input and output tensors. An integer-quantised input or
output is shown to clients as float32: `Quantization` converts at the edges.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from app.errors import LoadError, RuntimeUnavailable
from app.serving.types import Signature, TensorSpec


@dataclass(frozen=True)
class Quantization:
    """How an integer tensor maps to the floats clients see: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int
    dtype: np.dtype  # the tensor's integer type inside the model

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Floats to the model's integers, rounded and clipped to the type's range."""
        info = np.iinfo(self.dtype)
        return np.clip(np.rint(values / self.scale) + self.zero_point, info.min, info.max).astype(self.dtype)

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        """The model's integers back to float32."""
        return ((values.astype(np.float32) - self.zero_point) * np.float32(self.scale)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """For `GET /models/NAME`."""
        return {"dtype": self.dtype.name, "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class Endpoints:
    """The flatbuffer's tensor index for each signature input and output, in the signature's order,
    and the quantization of those whose floats are converted at the edges (None: passed as they are)."""

    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    input_quantization: tuple[Quantization | None, ...]
    output_quantization: tuple[Quantization | None, ...]


def endpoints_by_name(content: bytes, signature: Signature, graph_input_names: tuple[str, ...]) -> Endpoints:
    """Endpoints of a model converted from a traced function: inputs by graph name, outputs in subgraph order."""
    interpreter = Interpreter(model_content=content)
    by_name = {detail["name"]: detail for detail in interpreter.get_input_details()}
    inputs = []
    for spec, graph_name in zip(signature.inputs, graph_input_names):
        detail = by_name.get(graph_name)
        if detail is None:
            raise RuntimeUnavailable(f"input {spec.name!r} is missing from the converted model")
        if np.dtype(detail["dtype"]) != np.dtype(spec.dtype):
            raise RuntimeUnavailable(f"input {spec.name!r} became {np.dtype(detail['dtype'])} in TFLite")
        inputs.append(detail["index"])
    # The subgraph keeps the traced function's output order (the probe in runtime.py checks it).
    outputs = [detail["index"] for detail in interpreter.get_output_details()]
    if len(outputs) != len(signature.outputs):
        raise RuntimeUnavailable(f"the converted model has {len(outputs)} outputs, not {len(signature.outputs)}")
    none = (None,)
    return Endpoints(tuple(inputs), tuple(outputs), none * len(inputs), none * len(outputs))


@dataclass(frozen=True)
class TfliteFile:
    """A flatbuffer read from disk: its bytes, signature and endpoints (the loader's answer for `.tflite`)."""

    content: bytes
    signature: Signature
    endpoints: Endpoints
    signature_key: str | None
    model: None = None  # no Keras model: what reads a LoadedModel's `model` finds nothing
    file_format: str = "tflite"
    loaded_by: str = "litert"
    keras_version: str | None = None
    backend: str | None = None

    def quantization(self) -> dict[str, dict[str, Any]]:
        """The quantization parameters of every quantised input and output, by tensor name."""
        pairs = [*zip(self.signature.inputs, self.endpoints.input_quantization),
                 *zip(self.signature.outputs, self.endpoints.output_quantization)]
        return {spec.name: q.to_dict() for spec, q in pairs if q is not None}


def read_tflite(path: Path) -> TfliteFile:
    """Read `path`'s signature with LiteRT; a LoadError with a one-line reason when it is not a usable model."""
    try:
        content = path.read_bytes()
        interpreter = Interpreter(model_content=content)
    except (OSError, ValueError, RuntimeError) as exc:
        raise LoadError(f"cannot read {path.name} as a TFLite model: {str(exc).strip()[:200]}") from None
    signatures = interpreter.get_signature_list()
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures), None)
    if len(signatures) > 1 and key != "serving_default":
        raise LoadError(f"{path.name} has {len(signatures)} signatures and none is serving_default")
    if key is None:
        ins = {_tensor_name(d["name"]): d for d in interpreter.get_input_details()}
        outs = {_tensor_name(d["name"]): d for d in interpreter.get_output_details()}
    else:
        runner = interpreter.get_signature_runner(key)
        ins, outs = runner.get_input_details(), runner.get_output_details()
    inputs = [(_spec(name, d), d["index"], _quantization(d)) for name, d in ins.items()]
    outputs = [(_spec(name, d), d["index"], _quantization(d)) for name, d in outs.items()]
    signature = Signature(tuple(s for s, _, _ in inputs), tuple(s for s, _, _ in outputs))
    endpoints = Endpoints(tuple(i for _, i, _ in inputs), tuple(i for _, i, _ in outputs),
                          tuple(q for _, _, q in inputs), tuple(q for _, _, q in outputs))
    return TfliteFile(content, signature, endpoints, key)


def _tensor_name(name: str) -> str:
    """A tensor's name without TensorFlow's `serving_default_` prefix and `:0` suffix."""
    return name.removeprefix("serving_default_").rsplit(":", 1)[0]


def _quantization(detail: dict[str, Any]) -> Quantization | None:
    """The tensor's per-tensor quantization when it is an integer tensor standing for floats, else None."""
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale == 0 or not np.issubdtype(dtype, np.integer):
        return None
    return Quantization(float(scale), int(zero_point), dtype)


def _spec(name: str, detail: dict[str, Any]) -> TensorSpec:
    """The client-facing spec: batch and -1 dimensions as None, quantised integers as float32."""
    shape = [int(d) for d in detail.get("shape_signature", detail["shape"])]
    dims = (None, *(None if d < 0 else d for d in shape[1:])) if shape else ()
    dtype = "float32" if _quantization(detail) else np.dtype(detail["dtype"]).name
    return TensorSpec(name, dtype, dims)
