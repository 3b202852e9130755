"""Bring one version from LOADING to AVAILABLE (or FAILED): load, compile, warm up, choose a runtime."""
from __future__ import annotations

import logging
import statistics
import time

import numpy as np

from app.serving.batching import Batcher
from app.serving.loader import LoadFailure, load_model_file
from app.serving.registry import ServableVersion
from app.serving.runtime import CompiledModel, choose_runtime, configure_threads
from app.serving.types import Arrays, ForwardPass, ModelState, Signature

log = logging.getLogger(__name__)

# Sizes tried for variable (None) dimensions during warm-up: small first, then
# sizes that survive pooling in image models.
WARMUP_DIM_CANDIDATES = (1, 8, 32, 64, 224)
PROBE_ROWS = 3          # rows of the input that checks TFLite against TensorFlow (pads to 4)
SHARE_ROWS = 8          # call costs are measured at 1 and at this many rows
SHARE_MIN_SAVING_US = 30.0  # sharing a call must save more per request than a hand-off to the batcher costs
COST_BUDGET_S = 0.5     # time spent measuring call costs, at most (roughly)


def load_version(servable: ServableVersion, tf_threads: tuple[int, int]) -> None:
    """Load, compile and warm up `servable`; it ends AVAILABLE or FAILED with a reason."""
    source = servable.source
    if source.problem:
        _fail(servable, source.problem)
        return
    configure_threads(*tf_threads)
    started = time.perf_counter()
    try:
        loaded = load_model_file(source)
        compiled = CompiledModel(loaded)
        warmup_seconds, sample = warm_up(compiled, loaded.signature)
        forward, not_tflite = choose_runtime(compiled, probe_inputs(sample), source.runtime, tf_threads[0])
        one_row_us, many_rows_us = call_costs(forward, sample)
    except LoadFailure as exc:
        _fail(servable, str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - any cause becomes a FAILED reason
        _fail(servable, " ".join(f"{type(exc).__name__}: {exc}".split())[:300])
        return
    share = one_row_us - many_rows_us / SHARE_ROWS >= SHARE_MIN_SAVING_US
    servable.signature = loaded.signature
    servable.metadata = {
        "format": loaded.file_format,
        "loaded_by": loaded.loaded_by,
        "keras_version": loaded.keras_version,
        "backend": loaded.backend,
        "load_seconds": round(time.perf_counter() - started, 3),
        "warmup_seconds": round(warmup_seconds, 3),
        "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runtime": {"kind": forward.kind, "not_tflite_because": not_tflite,
                    "call_us": {"1": round(one_row_us, 1), str(SHARE_ROWS): round(many_rows_us, 1)},
                    "shares_calls": share},
    }
    servable.batcher = Batcher(forward, source.batching, share_calls=share)
    servable.state = ModelState.AVAILABLE
    log.info("model %s version %s AVAILABLE (%s, %s, %.2fs)", servable.name, servable.version,
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
    raise RuntimeError(f"warm-up call failed: {' '.join(str(last_error).split())[:250]}")


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


def _fail(servable: ServableVersion, reason: str) -> None:
    servable.state = ModelState.FAILED
    servable.error = reason
    log.warning("model %s version %s FAILED: %s", servable.name, servable.version, reason)
