"""The loader: bring one servable version from LOADING to AVAILABLE (or FAILED).

`prepare` loads, compiles, warms up and chooses the runtime (the `check` command runs it alone);
`load_version` adds the call costs and the batcher, and is what the manager is given (lazily,
through `app.serving.lazy_loader.TensorFlowLoader`). A `.tflite` version is read and run by LiteRT
alone (`prepare_tflite`): TensorFlow and Keras are imported only for a Keras file (inside `prepare`).
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.errors import LoadError, one_line, reason_for
from app.serving.batching import Batcher
from app.serving.servable import ServableVersion
from app.serving.tflite_file import TfliteFile, read_tflite
from app.serving.tflite_runtime import LiteModel
from app.serving.types import Arrays, ForwardPass, ModelSource, ModelState, Signature

if TYPE_CHECKING:
    from app.serving.loader import LoadedModel

log = logging.getLogger(__name__)

# Sizes tried for variable (None) dimensions during warm-up: small first, then
# sizes that survive pooling in image models.
WARMUP_DIM_CANDIDATES = (1, 8, 32, 64, 224)
PROBE_ROWS = 3          # rows of the input that checks TFLite against TensorFlow (pads to 4)
SHARE_ROWS = 8          # call costs are measured at 1 and at this many rows
SHARE_MIN_SAVING_US = 30.0  # sharing a call must save more per request than a hand-off to the batcher costs
COST_BUDGET_S = 0.5     # time spent measuring call costs, at most (roughly)


@dataclass(frozen=True)
class Prepared:
    """A model file made ready to answer: the loaded model, its forward pass and how long each step took."""

    loaded: LoadedModel | TfliteFile
    forward: ForwardPass  # a runtime.CompiledModel or a tflite_runtime.LiteModel (both have `kind`)
    not_tflite: str | None  # why the forward pass is not TFLite, when it is not
    load_seconds: float
    warmup_seconds: float
    sample: Arrays  # the warm-up input


def prepare(source: ModelSource, tf_threads: tuple[int, int]) -> Prepared:
    """Load, compile, warm up and choose the runtime for `source`; any failure is a one-line LoadError."""
    if source.problem:
        raise LoadError(source.problem)
    if source.path is not None and source.path.suffix == ".tflite":
        return prepare_tflite(source, tf_threads[0])
    from app.serving.loader import load_model_file  # imports TensorFlow and Keras
    from app.serving.runtime import CompiledModel, choose_runtime, configure_threads

    configure_threads(*tf_threads)
    started = time.perf_counter()
    try:
        loaded = load_model_file(source)
        load_seconds = time.perf_counter() - started
        compiled = CompiledModel(loaded)
        warmup_seconds, sample = warm_up(compiled, loaded.signature)
        forward, not_tflite = choose_runtime(compiled, probe_inputs(sample), source.runtime, tf_threads[0])
    except LoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any cause becomes the reason
        raise LoadError(reason_for(exc)) from exc
    return Prepared(loaded, forward, not_tflite, load_seconds, warmup_seconds, sample)


def prepare_tflite(source: ModelSource, threads: int) -> Prepared:
    """Read a `.tflite` file's signature and run it on LiteRT (no TensorFlow); warm it up."""
    if source.runtime == "tf":
        raise LoadError("a .tflite file runs on LiteRT only: the runtime setting tf cannot serve it")
    started = time.perf_counter()
    try:
        read = read_tflite(source.path)
        forward = LiteModel(read.content, read.signature, read.endpoints, threads=threads)
        load_seconds = time.perf_counter() - started
        warmup_seconds, sample = warm_up(forward, read.signature)
    except LoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any cause becomes the reason
        raise LoadError(reason_for(exc)) from exc
    return Prepared(read, forward, None, load_seconds, warmup_seconds, sample)


def load_version(servable: ServableVersion, tf_threads: tuple[int, int]) -> None:
    """Prepare `servable`, measure its call costs and start its batcher; it ends AVAILABLE or FAILED with a reason."""
    started = time.perf_counter()
    try:
        ready = prepare(servable.source, tf_threads)
        one_row_us, many_rows_us = call_costs(ready.forward, ready.sample)
    except Exception as exc:  # noqa: BLE001 - any cause becomes a FAILED reason
        _fail(servable, reason_for(exc))
        return
    loaded, forward, source = ready.loaded, ready.forward, servable.source
    share = one_row_us - many_rows_us / SHARE_ROWS >= SHARE_MIN_SAVING_US
    servable.signature = loaded.signature
    servable.keras_model = None if isinstance(loaded, TfliteFile) else loaded.model  # for /explain
    servable.metadata = {
        "format": loaded.file_format,
        "loaded_by": loaded.loaded_by,
        "keras_version": loaded.keras_version,
        "backend": loaded.backend,
        "translated_lambdas": [] if isinstance(loaded, TfliteFile) else _translated_lambdas(loaded.model),
        "load_seconds": round(time.perf_counter() - started, 3),
        "warmup_seconds": round(ready.warmup_seconds, 3),
        "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runtime": {"kind": forward.kind, "not_tflite_because": ready.not_tflite,
                    "call_us": {"1": round(one_row_us, 1), str(SHARE_ROWS): round(many_rows_us, 1)},
                    "shares_calls": share},
    }
    if isinstance(loaded, TfliteFile) and loaded.quantization():
        servable.metadata["quantization"] = loaded.quantization()
    servable.batcher = Batcher(forward, source.batching, share_calls=share, name=servable.name,
                               version=servable.version)
    servable.state = ModelState.AVAILABLE
    log.debug("model %s version %s AVAILABLE (%s, %s, %.2fs)", servable.name, servable.version,
             loaded.loaded_by, servable.metadata["runtime"]["kind"], servable.metadata["load_seconds"])


def warm_up(compiled: ForwardPass, signature: Signature) -> tuple[float, Arrays]:
    """Call the model once on zeros; try larger sizes for variable dims. Returns (seconds, the input used)."""
    started = time.perf_counter()
    last_error: Exception | None = None
    for size in WARMUP_DIM_CANDIDATES:
        inputs = {spec.name: np.zeros([1] + [size if d is None else d for d in spec.shape[1:]],
                                      dtype=spec.dtype)
                  for spec in signature.inputs}
        try:
            compiled(inputs)
            return time.perf_counter() - started, inputs
        except Exception as exc:  # noqa: BLE001 - try the next size
            last_error = exc
            if not any(d is None for spec in signature.inputs for d in spec.shape[1:]):
                break
    raise LoadError(f"warm-up call failed: {one_line(last_error, 250)}")


def probe_inputs(sample: Arrays) -> Arrays:
    """PROBE_ROWS rows shaped like `sample`: seeded normal values for floats, zeros otherwise."""
    rng = np.random.default_rng(0)
    probe = {}
    for name, array in sample.items():
        shape = (PROBE_ROWS, *array.shape[1:])
        if np.issubdtype(array.dtype, np.floating):
            probe[name] = rng.standard_normal(shape).astype(array.dtype)
        else:
            probe[name] = np.zeros(shape, dtype=array.dtype)
    return probe


def call_costs(forward: ForwardPass, sample: Arrays) -> tuple[float, float]:
    """Median microseconds of a 1-row and a SHARE_ROWS-row call (decides whether calls are shared)."""
    many = {name: np.repeat(array, SHARE_ROWS, axis=0) for name, array in sample.items()}
    costs = []
    for inputs in (sample, many):
        forward(inputs)
        timings: list[float] = []
        deadline = time.perf_counter() + COST_BUDGET_S / 2
        while len(timings) < 25 and (len(timings) < 3 or time.perf_counter() < deadline):
            began = time.perf_counter()
            forward(inputs)
            timings.append(time.perf_counter() - began)
        costs.append(statistics.median(timings) * 1e6)
    return costs[0], costs[1]


def _translated_lambdas(model: object) -> list[dict[str, str]]:
    """The Lambda layers the loader translated (imports Keras: never called for a .tflite version)."""
    from app.serving.legacy.lambda_layer import translated_lambdas

    return translated_lambdas(model)


def _fail(servable: ServableVersion, reason: str) -> None:
    servable.state = ModelState.FAILED
    servable.error = reason
    log.debug("model %s version %s FAILED: %s", servable.name, servable.version, reason)
