"""The TFLite forward pass on LiteRT (`ai-edge-litert`): small interpreters over one flatbuffer. No TensorFlow here.

Measured here: a TFLite interpreter call costs 2-20 us against about 200 us for the same
model's TensorFlow function, so models that convert answer from TFLite. An interpreter has
fixed shapes and is not thread-safe: rows are padded up to a power of two, and each such
size gets its own interpreter and lock, created on first use. Rows never mix: padding rows
are zeros and are cut off before the answer is returned.

A model converted at load time is checked against its TensorFlow function (`reference`) on a
probe input for every interpreter size; a size whose answers disagree is served by the function.
A `.tflite` file has no reference: its interpreters answer at every size. Integer-quantised
inputs and outputs are quantised and dequantised at the edges (`Endpoints`): clients send floats.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from app.errors import RuntimeUnavailable
from app.serving.tflite_file import Endpoints
from app.serving.types import Arrays, ForwardPass, Signature

log = logging.getLogger(__name__)

AGREEMENT_RTOL = 1e-4   # TFLite must match the TensorFlow function this closely on the probe
AGREEMENT_ATOL = 1e-5   # ... times the largest absolute output (at least 1)


def bucket(rows: int) -> int:
    """The interpreter size for `rows`: the next power of two."""
    return 1 << max(rows - 1, 0).bit_length()


@dataclass(frozen=True)
class _Slot:
    """One interpreter sized for `rows` rows and the lock that guards it (calls from `interpreter_calls`)."""

    rows: int
    interpreter: Any  # not called on the hot path: it owns the model the C++ wrapper reads
    lock: threading.Lock
    set_tensor: Any
    invoke: Any
    get_tensor: Any


class LiteModel:
    """Callable forward pass over a TFLite flatbuffer: dict of arrays in, dict of arrays out."""

    kind = "tflite"

    def __init__(self, content: bytes, signature: Signature, endpoints: Endpoints,
                 reference: ForwardPass | None = None, probe: Arrays | None = None, threads: int = 1):
        self.signature, self.endpoints = signature, endpoints
        self._content = content
        self._reference, self._probe = reference, probe
        self._threads = threads or None
        self._slots: dict[int, _Slot | None] = {}  # None: this size is served by `reference`
        self._create_lock = threading.Lock()
        self._inputs = tuple(zip(signature.input_names, endpoints.inputs, endpoints.input_quantization,
                                 [(spec.shape[1:], np.dtype(q.dtype if q else spec.dtype))
                                  for spec, q in zip(signature.inputs, endpoints.input_quantization)]))
        self._outputs = tuple(zip(signature.output_names, endpoints.outputs, endpoints.output_quantization))
        for spec in signature.inputs:
            if any(dim is None for dim in spec.shape[1:]):
                raise RuntimeUnavailable(f"input {spec.name!r} has a variable dimension besides the batch")
        probe_rows = len(next(iter(probe.values()))) if probe else 1
        for rows in sorted({1, bucket(probe_rows)}):
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
        return self._run(slot, inputs, rows)

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
        if self._reference is None or self._probe is None:
            return None
        reps = -(-slot.rows // len(next(iter(self._probe.values()))))
        probe = {name: np.concatenate([array] * reps)[:slot.rows] for name, array in self._probe.items()}
        expected, got = self._reference(probe), self._run(slot, probe, slot.rows)
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
        try:
            interpreter = Interpreter(model_content=self._content, num_threads=self._threads)
            for spec, index in zip(self.signature.inputs, self.endpoints.inputs):
                interpreter.resize_tensor_input(index, [rows, *spec.shape[1:]])
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise RuntimeUnavailable(f"LiteRT cannot run it at {rows} rows: {str(exc).strip()[:200]}") from None
        return _Slot(rows, interpreter, threading.Lock(), *interpreter_calls(interpreter))

    def _run(self, slot: _Slot, inputs: Arrays, rows: int) -> Arrays:
        """One interpreter call under the slot's lock; outputs are copies (cut to `rows` rows)."""
        with slot.lock:
            for name, index, quantization, (row_shape, dtype) in self._inputs:
                array = inputs[name] if quantization is None else quantization.quantize(inputs[name])
                slot.set_tensor(index, _padded(array, slot.rows, row_shape, dtype))
            slot.invoke()
            out = {name: slot.get_tensor(index) for name, index, _ in self._outputs}
        for name, _, quantization in self._outputs:
            if rows != slot.rows:
                out[name] = out[name][:rows]
            if quantization is not None:
                out[name] = quantization.dequantize(out[name])
        return out


def interpreter_calls(interpreter: Any) -> tuple[Any, Any, Any]:
    """(set_tensor, invoke, get_tensor) of the private C++ wrapper `_interpreter`, else the public methods (which
    add three frames and a check that guards `tensor()` views, never taken here); test_runtime.py watches it."""
    wrapper = getattr(interpreter, "_interpreter", None)
    if all(hasattr(wrapper, name) for name in ("SetTensor", "Invoke", "GetTensor")):
        return wrapper.SetTensor, wrapper.Invoke, wrapper.GetTensor
    return interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor


def _padded(array: np.ndarray, rows: int, row_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """`array` with zero rows appended up to `rows` (itself, C-contiguous, when it already fits)."""
    if len(array) == rows:
        return array if array.flags.c_contiguous else np.ascontiguousarray(array)
    out = np.zeros((rows, *row_shape), dtype=dtype)
    out[:len(array)] = array
    return out
