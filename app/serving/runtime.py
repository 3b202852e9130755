"""The runtime: a compiled forward pass over a loaded model.

A `tf.function` with a batch-None input signature is traced once and then called
from any thread; `predict()` is never used (about 60 ms a call here).
"""
from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one trace per model is by design; its retracing warning is noise

from app.serving.loader import LoadedModel  # noqa: E402
from app.serving.types import Signature  # noqa: E402

_threads_configured = threading.Lock()
_configured = False


def configure_threads(intra_op: int, inter_op: int) -> None:
    """Set TensorFlow's thread pools once per process, before the first op runs."""
    global _configured
    with _threads_configured:
        if _configured:
            return
        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
        except RuntimeError:
            pass  # TensorFlow was already initialised; keep its settings.
        _configured = True


class CompiledModel:
    """Callable forward pass: dict of input arrays in, dict of output arrays out."""

    def __init__(self, loaded: LoadedModel):
        self.signature: Signature = loaded.signature
        model = loaded.model
        input_struct = getattr(model, "_inputs_struct", None)
        names = self.signature.input_names
        specs = [tf.TensorSpec((None, *spec.shape[1:]), tf.as_dtype(spec.dtype), name=_safe(spec.name))
                 for spec in self.signature.inputs]

        def structure(tensors: tuple[Any, ...]) -> Any:
            if isinstance(input_struct, dict):
                return dict(zip(names, tensors))
            if len(tensors) == 1:
                return tensors[0]
            return list(tensors)

        output_names = self.signature.output_names

        def forward(*tensors: Any) -> list[Any]:
            result = model(structure(tensors), training=False)
            if isinstance(result, dict):
                return [result[name] for name in output_names]
            return list(result) if isinstance(result, (list, tuple)) else [result]

        concrete = tf.function(forward, input_signature=specs, autograph=False).get_concrete_function()
        self._output_names = output_names
        self._dtypes = [tf.as_dtype(spec.dtype) for spec in self.signature.inputs]
        # Calling the concrete function's flat entry point skips tf.function's dispatch and
        # argument canonicalisation (about 240 us -> 50 us a call here); the public call is
        # the fallback should a TensorFlow upgrade rename it.
        flat_call = getattr(concrete, "_call_flat", None)
        captured = concrete.captured_inputs
        if flat_call is not None:
            self._call = lambda tensors: flat_call(tensors, captured)
        else:
            self._call = lambda tensors: concrete(*tensors)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one forward pass over arrays already cast and shaped for the signature."""
        tensors = [tf.constant(inputs[name], dtype=dtype)
                   for name, dtype in zip(self.signature.input_names, self._dtypes)]
        result = self._call(tensors)
        return {name: tensor.numpy() for name, tensor in zip(self._output_names, result)}


def _safe(name: str) -> str:
    """TensorSpec names must be valid op names."""
    cleaned = "".join(ch if ch.isalnum() or ch in "_." else "_" for ch in name)
    return cleaned if cleaned and cleaned[0].isalpha() else f"input_{cleaned}"
