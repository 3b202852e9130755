"""Plain value types shared by the serving core; no TensorFlow here."""
from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Arrays = dict[str, np.ndarray]  # named tensors, batch first
ForwardPass = Callable[[Arrays], Arrays]  # a compiled model: input arrays in, output arrays out
RUNTIMES = ("auto", "tflite", "tf")  # the forward-pass choices (runtime.choose_runtime)


class ModelState(str, enum.Enum):
    """State of one servable version (TF Serving's words)."""

    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"
    END = "END"  # not aspired (outside the version policy, or unloaded through the API): never loaded, never routed


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: numpy dtype name and full shape (batch first, None = variable).

    `numpy_dtype` and `row_shape` (the shape after the batch, None when a dimension varies) are
    derived once: every request reads them."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    numpy_dtype: np.dtype = field(init=False, repr=False, compare=False)
    row_shape: tuple[int, ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "numpy_dtype", np.dtype(self.dtype))
        rest = self.shape[1:]
        object.__setattr__(self, "row_shape", None if None in rest else rest)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Signature:
    """A model's inputs and outputs, in the model's own order (their names kept: read per request)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    output_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_names", tuple(spec.name for spec in self.inputs))
        object.__setattr__(self, "output_names", tuple(spec.name for spec in self.outputs))


@dataclass(frozen=True)
class BatchingSettings:
    """Effective batching settings of one model version (global, then per-model overrides)."""

    max_batch_size: int
    max_batch_delay_ms: float
    max_queue_rows: int
    request_timeout: float

    def to_dict(self) -> dict:
        return {
            "max_batch_size": self.max_batch_size,
            "max_batch_delay_ms": self.max_batch_delay_ms,
            "max_queue_rows": self.max_queue_rows,
            "request_timeout": self.request_timeout,
        }


@dataclass(frozen=True)
class ModelSource:
    """One aspired version: a version the source (the model folder) wants served, with its settings."""

    name: str
    version: int
    path: Path | None
    batching: BatchingSettings
    safe_mode: bool = True
    runtime: str = "auto"  # auto | tflite | tf (runtime.choose_runtime)
    custom_objects_path: Path | None = None
    allow_custom_code: bool = False  # import custom_objects_path (SERVING_ALLOW_CUSTOM_CODE)
    config_path: Path | None = None
    problem: str | None = None  # set when the folder layout itself is wrong
    file_stamp: tuple[int, int] | None = None  # the model file's (size, mtime_ns) when last settled: a change reloads


@dataclass(frozen=True)
class ModelPlan:
    """What the source wants for one model: its aspired versions, the ones it found but does not aspire
    (with why), its labels and the version a request naming neither version nor label gets."""

    name: str
    versions: tuple[ModelSource, ...]  # aspired, lowest first
    not_aspired: tuple[tuple[int, str], ...] = ()  # (version, why)
    labels: Mapping[str, int] = field(default_factory=dict)
    default_version: int | None = None  # None: the highest version routable in every worker
