"""The runtime: a compiled forward pass over a loaded model.

A `tf.function` with a batch-None input signature is traced once; `predict()` is never
used (about 60 ms a call here). With the `auto` runtime the traced function is also
converted to TFLite (`tflite_runtime.py`), which answers when its outputs agree with the
function's on a probe input; otherwise the function answers and the reason is reported.
"""
from __future__ import annotations

import contextlib
import ctypes.util
import os
import tempfile
import threading
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one trace per model is by design; its retracing warning is noise

from app.errors import LoadError, RuntimeUnavailable, one_line, reason_for  # noqa: E402
from app.serving.loader import LoadedModel, built_structure  # noqa: E402
from app.serving.tflite_file import endpoints_by_name  # noqa: E402
from app.serving.tflite_runtime import LiteModel  # noqa: E402
from app.serving.types import Arrays, Signature  # noqa: E402

# Above this many bytes of weights, `auto` keeps the TF function and does not convert. TFLite costs
# memory: XNNPACK packs its own copy of the weights for every padded batch size in use, and the
# converter leaves some heap behind (12.6 MB MLP: +143 MB resident at load, +243 MB with all nine
# sizes, against +46 MB for the function). A bigger model's compute also dwarfs the ~200 us call
# overhead that TFLite saves (50 MB MLP, 32 rows: 4.7 ms under TFLite, 5.4 ms under the function).
TFLITE_MAX_BYTES = 8 * 1024 * 1024

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

    kind = "tf_function"

    def __init__(self, loaded: LoadedModel):
        self.signature: Signature = loaded.signature
        model = self._model = loaded.model  # the traced function holds its variables only weakly
        input_struct = built_structure(model, "input")
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
        self.concrete, self.specs = concrete, specs
        self.named_forward = lambda *tensors: dict(zip(output_names, forward(*tensors)))  # for export_tflite
        self.graph_input_names = tuple(spec.name for spec in specs)
        self.weight_bytes = sum(int(np.prod(w.shape)) * tf.as_dtype(w.dtype).size for w in model.weights)
        self._output_names = output_names
        self._dtypes = [tf.as_dtype(spec.dtype) for spec in self.signature.inputs]
        self._call = flat_call(concrete) or (lambda tensors: concrete(*tensors))

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one forward pass over arrays already cast and shaped for the signature."""
        tensors = [tf.constant(inputs[name], dtype=dtype)
                   for name, dtype in zip(self.signature.input_names, self._dtypes)]
        result = self._call(tensors)
        return {name: tensor.numpy() for name, tensor in zip(self._output_names, result)}


def flat_call(concrete: Any) -> Any:
    """The concrete function's private flat entry point `_call_flat` (None when TensorFlow dropped it).

    It skips tf.function's dispatch and argument canonicalisation (about 240 us -> 50 us a call
    here); the public call is the fallback, and tests/serving/test_runtime.py fails if it goes."""
    call, captured = getattr(concrete, "_call_flat", None), concrete.captured_inputs
    return None if call is None else (lambda tensors: call(tensors, captured))


def _safe(name: str) -> str:
    """TensorSpec names must be valid op names."""
    cleaned = "".join(ch if ch.isalnum() or ch in "_." else "_" for ch in name)
    return cleaned if cleaned and cleaned[0].isalpha() else f"input_{cleaned}"


def choose_runtime(compiled: CompiledModel, probe: Arrays, preference: str,
                   threads: int) -> tuple[CompiledModel | LiteModel, str | None]:
    """The forward pass to serve with, and why it is not TFLite when it is not.

    `preference` is `auto` (TFLite when it converts and agrees, else the function),
    `tflite` (TFLite or a load failure) or `tf` (the function).
    """
    if preference == "tf":
        return compiled, "the runtime setting asks for tf"
    try:
        if preference == "auto" and compiled.weight_bytes > TFLITE_MAX_BYTES:
            raise RuntimeUnavailable(f"the weights are {compiled.weight_bytes / 2**20:.1f} MiB; above "
                                  f"{TFLITE_MAX_BYTES // 2**20} MiB the conversion and a copy of the weights for "
                                  "every padded batch size cost more memory than TFLite saves time "
                                  "(set runtime tflite to force it)")
        content = convert(compiled.concrete)
        endpoints = endpoints_by_name(content, compiled.signature, compiled.graph_input_names)
        return LiteModel(content, compiled.signature, endpoints, reference=compiled, probe=probe, threads=threads), None
    except Exception as exc:  # noqa: BLE001 - an interpreter error also means "use the function"
        reason = reason_for(exc, 200)
    if preference == "tflite":
        raise LoadError(f"runtime tflite is required but unavailable: {reason}")
    return compiled, reason




def convert(concrete: Any) -> bytes:
    """Convert a traced concrete function to a TFLite flatbuffer (built-in ops only, no quantisation)."""
    return _converted(tf.lite.TFLiteConverter.from_concrete_functions([concrete]), "none", None)


def export_tflite(compiled: CompiledModel, quantize: str, calibration: Iterable[list[np.ndarray]] | None) -> bytes:
    """`compiled`'s model as a TFLite flatbuffer with one signature named like the Keras model's inputs and
    outputs, through a SavedModel (Keras 3's export); `calibration` yields the input rows int8 calibrates on."""
    import keras
    with tempfile.TemporaryDirectory() as folder:
        archive = keras.export.ExportArchive()
        archive.track(compiled._model)  # noqa: SLF001 - the variables the SavedModel saves
        archive.add_endpoint("serving_default", compiled.named_forward, input_signature=compiled.specs)
        archive.write_out(folder, verbose=False)
        return _converted(tf.lite.TFLiteConverter.from_saved_model(folder), quantize, calibration)


def _converted(converter: Any, quantize: str, calibration: Iterable[list[np.ndarray]] | None) -> bytes:
    """Run `converter` with the options of `quantize`; a RuntimeUnavailable naming the first error otherwise."""
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: iter(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # int8 calibration runs tf.lite.Interpreter, which warns of LiteRT
            return converter.convert()
    except Exception as exc:  # noqa: BLE001 - any converter failure means "use TensorFlow"
        raise RuntimeUnavailable(f"conversion failed: {_first_error(str(exc)) or type(exc).__name__}") from None
    finally:
        _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand the converter's freed heap back to the OS (glibc keeps it: 12.6 MB model, +114 MB resident, +31 after)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _first_error(message: str) -> str:
    """The converter's first `error:` text without its source location (`loc(...)`, naming TensorFlow's files)."""
    lines = [line for line in message.splitlines() if line.strip()]
    text = next((line for line in lines if "error: " in line), lines[0] if lines else "").split("error: ", 1)[-1]
    depth = 0
    for end, char in enumerate(text if text.startswith("loc(") else ""):
        depth += (char == "(") - (char == ")")
        if char == ")" and depth == 0:
            text = text[end + 1:].lstrip(": ")
            break
    return one_line(text, 200)
