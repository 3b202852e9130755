"""The loader: turn a model file into a loaded Keras model and its signature.

This is the only module that knows Keras file formats. Models are read with
`compile=False` and Keras safe mode on unless the model's `serving.json` turns it off.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from app.serving.types import ModelSource, Signature, TensorSpec  # noqa: E402

log = logging.getLogger(__name__)


class LoadFailure(Exception):
    """A file that cannot be served; the message is a one-line reason naming the cause."""


@dataclass(frozen=True)
class LoadedModel:
    """A model read from disk, with what the registry reports about it."""

    model: Any
    signature: Signature
    file_format: str  # "hdf5" or "keras_zip"
    loaded_by: str  # "keras3" or "tf_keras"
    keras_version: str | None = None
    backend: str | None = None


def sniff_format(path: Path) -> str:
    """The file's real format from its first bytes: hdf5, keras_zip, pickle or unknown."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"PK\x03\x04"):
        return "keras_zip"
    if head[:1] == b"\x80" and head[1:2] in {bytes([n]) for n in range(2, 6)}:
        return "pickle"
    return "unknown"


def load_model_file(source: ModelSource) -> LoadedModel:
    """Load `source.path`; raise LoadFailure with a one-line reason when it cannot be served."""
    path = source.path
    if path is None or not path.is_file():
        raise LoadFailure(f"model file {path} does not exist")
    try:
        file_format = sniff_format(path)
    except OSError as exc:
        raise LoadFailure(f"cannot read {path.name}: {exc.strerror}") from None
    if file_format == "pickle":
        raise LoadFailure(f"{path.name} is a Python pickle, not a Keras file")
    if file_format == "unknown":
        raise LoadFailure(f"{path.name} is neither HDF5 nor a Keras 3 zip archive")
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=source.safe_mode)
    except Exception as exc:  # noqa: BLE001 - every cause becomes a reason
        raise LoadFailure(_one_line(exc)) from None
    return LoadedModel(model=model, signature=describe_signature(model),
                       file_format=file_format, loaded_by="keras3")


def describe_signature(model: Any) -> Signature:
    """Input and output specs of a loaded Keras 3 model, in the model's call order."""
    input_struct = getattr(model, "_inputs_struct", None)
    if isinstance(input_struct, dict):
        inputs = [_spec(key, tensor) for key, tensor in input_struct.items()]
    else:
        inputs = [_spec(_tensor_name(t), t) for t in model.inputs]
    output_struct = getattr(model, "_outputs_struct", None)
    if isinstance(output_struct, dict):
        outputs = [_spec(key, output_struct[key]) for key in sorted(output_struct)]
    else:
        names = list(getattr(model, "output_names", None) or [model.layers[-1].name])
        outputs = [_spec(name, t) for name, t in zip(_unique(names), model.outputs)]
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs))


def _spec(name: str, tensor: Any) -> TensorSpec:
    shape = tuple(None if d is None else int(d) for d in tensor.shape)
    return TensorSpec(name=name, dtype=str(getattr(tensor.dtype, "name", tensor.dtype)), shape=shape)


def _tensor_name(tensor: Any) -> str:
    history = getattr(tensor, "_keras_history", None)
    if history is not None:
        return history[0].name
    return tensor.name


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        unique.append(name if count == 0 else f"{name}_{count}")
        seen[name] = count + 1
    return unique


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
