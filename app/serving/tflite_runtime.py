"""The TensorFlow Lite forward pass: the traced function converted once, run by small interpreters.

Measured here: a TFLite interpreter call costs 2-20 us against about 200 us for the same
model's TensorFlow function, so models that convert answer from TFLite. An interpreter has
fixed shapes and is not thread-safe: rows are padded up to a power of two, and each such
size gets its own interpreter and lock, created on first use. Rows never mix: padding rows
are zeros and are cut off before the answer is returned.

Every interpreter is checked against the TensorFlow function (`reference`) on a probe input
when it is created; a size whose answers disagree is served by the function instead.
"""
from __future__ import annotations

import contextlib
import ctypes.util
import logging
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from app.errors import RuntimeUnavailable, one_line
from app.serving.types import Arrays, ForwardPass, Signature

log = logging.getLogger(__name__)

AGREEMENT_RTOL = 1e-4   # TFLite must match the TensorFlow function this closely on the probe
AGREEMENT_ATOL = 1e-5   # ... times the largest absolute output (at least 1)


def convert(concrete: Any) -> bytes:
    """Convert a traced concrete function to a TFLite flatbuffer (built-in ops only, no quantisation)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return converter.convert()
    except Exception as exc:  # noqa: BLE001 - any converter failure means "use TensorFlow"
        raise RuntimeUnavailable(f"conversion failed: {_first_error(str(exc)) or type(exc).__name__}") from None
    finally:
        _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand the converter's freed heap back to the OS (glibc keeps it otherwise: measured on a
    12.6 MB model, +114 MB resident after conversion, +31 MB after this)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _first_error(message: str) -> str:
    """The converter's first `error:` text without its source location (it names TensorFlow's files)."""
    lines = [line for line in message.splitlines() if line.strip()]
    first = next((line for line in lines if "error: " in line), lines[0] if lines else "")
    return one_line(first.split("error: ", 1)[-1], 200)


def bucket(rows: int) -> int:
    """The interpreter size for `rows`: the next power of two."""
    return 1 << max(rows - 1, 0).bit_length()


@dataclass(frozen=True)
class _Slot:
    """One interpreter sized for `rows` rows, its tensor indices, and the lock that guards it.

    `set_tensor`, `invoke` and `get_tensor` come from `interpreter_calls`."""

    rows: int
    interpreter: Any  # not called on the hot path: it owns the model the C++ wrapper reads
    inputs: tuple[tuple[str, int, tuple[int, ...], np.dtype], ...]  # name, index, row shape, dtype
    outputs: tuple[tuple[str, int], ...]                         # name, index
    lock: threading.Lock
    set_tensor: Any
    invoke: Any
    get_tensor: Any


class LiteModel:
    """Callable forward pass over a TFLite flatbuffer: dict of arrays in, dict of arrays out."""

    kind = "tflite"

    def __init__(self, content: bytes, signature: Signature, graph_input_names: tuple[str, ...],
                 reference: ForwardPass, probe: Arrays, threads: int = 1):
        self.signature = signature
        self._content = content
        self._graph_input_names = graph_input_names
        self._reference, self._probe = reference, probe
        self._threads = threads or None
        self._slots: dict[int, _Slot | None] = {}  # None: this size is served by `reference`
        self._create_lock = threading.Lock()
        if len(set(graph_input_names)) != len(graph_input_names):
            raise RuntimeUnavailable("two inputs share a graph name")
        for spec in signature.inputs:
            if any(dim is None for dim in spec.shape[1:]):
                raise RuntimeUnavailable(f"input {spec.name!r} has a variable dimension besides the batch")
        for rows in (1, bucket(len(next(iter(probe.values()))))):
            slot = self._create(rows)  # raises now, not at the first request
            problem = self._disagreement(slot)
            if problem:
                raise RuntimeUnavailable(problem)
            self._slots[rows] = slot

    @property
    def sizes(self) -> list[int]:
        """Row counts answered by an interpreter so far."""
        return sorted(rows for rows, slot in self._slots.items() if slot is not None)

    def __call__(self, inputs: Arrays) -> Arrays:
        """Run one forward pass over arrays already cast and shaped for the signature."""
        rows = len(next(iter(inputs.values())))
        size = bucket(rows)
        slot = self._slots[size] if size in self._slots else self._slot(size)
        if slot is None:
            return self._reference(inputs)
        return _run(slot, inputs, rows)

    def _slot(self, rows: int) -> _Slot | None:
        """The checked interpreter for `rows` rows, created once (None when it disagrees)."""
        with self._create_lock:
            if rows not in self._slots:
                slot = self._create(rows)
                problem = self._disagreement(slot)
                if problem:
                    log.warning("TFLite at %d rows is not used: %s", rows, problem)
                self._slots[rows] = None if problem else slot
            return self._slots[rows]

    def _disagreement(self, slot: _Slot) -> str | None:
        """None when `slot` answers the probe (tiled to its size) like the reference, else how not."""
        reps = -(-slot.rows // len(next(iter(self._probe.values()))))
        probe = {name: np.concatenate([array] * reps)[:slot.rows] for name, array in self._probe.items()}
        expected, got = self._reference(probe), _run(slot, probe, slot.rows)
        for name, want in expected.items():
            have = got[name]
            if have.shape != want.shape:
                return f"output {name!r} has shape {list(have.shape)} under TFLite, {list(want.shape)} under TensorFlow"
            scale = max(1.0, float(np.nanmax(np.abs(want), initial=0.0)))
            if not np.allclose(have, want, rtol=AGREEMENT_RTOL, atol=AGREEMENT_ATOL * scale, equal_nan=True):
                worst = float(np.nanmax(np.abs(have.astype(np.float64) - want), initial=0.0))
                nan = " (TFLite gave NaN)" if np.isnan(have).any() and not np.isnan(want).any() else ""
                return f"output {name!r} differs from TensorFlow's by up to {worst:.3g}{nan}"
        return None

    def _create(self, rows: int) -> _Slot:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter warns that LiteRT will replace it
            interpreter = tf.lite.Interpreter(model_content=self._content, num_threads=self._threads)
        by_name = {detail["name"]: detail for detail in interpreter.get_input_details()}
        inputs = []
        for spec, graph_name in zip(self.signature.inputs, self._graph_input_names):
            detail = by_name.get(graph_name)
            if detail is None:
                raise RuntimeUnavailable(f"input {spec.name!r} is missing from the converted model")
            if np.dtype(detail["dtype"]) != np.dtype(spec.dtype):
                raise RuntimeUnavailable(f"input {spec.name!r} became {np.dtype(detail['dtype'])} in TFLite")
            interpreter.resize_tensor_input(detail["index"], [rows, *spec.shape[1:]], strict=True)
            inputs.append((spec.name, detail["index"], tuple(spec.shape[1:]), np.dtype(spec.dtype)))
        interpreter.allocate_tensors()
        # The subgraph keeps the traced function's output order (the probe in runtime.py checks it).
        output_indices = [detail["index"] for detail in interpreter.get_output_details()]
        if len(output_indices) != len(self.signature.outputs):
            raise RuntimeUnavailable(f"the converted model has {len(output_indices)} outputs, "
                                  f"not {len(self.signature.outputs)}")
        outputs = tuple(zip(self.signature.output_names, output_indices))
        return _Slot(rows, interpreter, tuple(inputs), outputs, threading.Lock(), *interpreter_calls(interpreter))


def interpreter_calls(interpreter: Any) -> tuple[Any, Any, Any]:
    """(set_tensor, invoke, get_tensor) of the private C++ wrapper `_interpreter`, else the public methods (which
    add three frames and a check that guards `tensor()` views, never taken here); test_runtime.py watches it."""
    wrapper = getattr(interpreter, "_interpreter", None)
    if all(hasattr(wrapper, name) for name in ("SetTensor", "Invoke", "GetTensor")):
        return wrapper.SetTensor, wrapper.Invoke, wrapper.GetTensor
    return interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor


def _run(slot: _Slot, inputs: Arrays, rows: int) -> Arrays:
    """One interpreter call under the slot's lock; outputs are copies (cut to `rows` rows)."""
    with slot.lock:
        for name, index, row_shape, dtype in slot.inputs:
            slot.set_tensor(index, _padded(inputs[name], slot.rows, row_shape, dtype))
        slot.invoke()
        if rows == slot.rows:
            return {name: slot.get_tensor(index) for name, index in slot.outputs}
        return {name: slot.get_tensor(index)[:rows] for name, index in slot.outputs}


def _padded(array: np.ndarray, rows: int, row_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """`array` with zero rows appended up to `rows` (itself, C-contiguous, when it already fits)."""
    if len(array) == rows:
        return array if array.flags.c_contiguous else np.ascontiguousarray(array)
    out = np.zeros((rows, *row_shape), dtype=dtype)
    out[:len(array)] = array
    return out
