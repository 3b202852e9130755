"""Bring one version from LOADING to AVAILABLE (or FAILED): load, compile, warm up."""
from __future__ import annotations

import logging
import time

import numpy as np

from app.serving.batching import Batcher
from app.serving.loader import LoadFailure, load_model_file
from app.serving.registry import ServableVersion
from app.serving.runtime import CompiledModel, configure_threads
from app.serving.types import ModelState, Signature

log = logging.getLogger(__name__)

# Sizes tried for variable (None) dimensions during warm-up: small first, then
# sizes that survive pooling in image models.
WARMUP_DIM_CANDIDATES = (1, 8, 32, 64, 224)


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
        warmup_seconds = warm_up(compiled, loaded.signature)
    except LoadFailure as exc:
        _fail(servable, str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - any cause becomes a FAILED reason
        _fail(servable, " ".join(f"{type(exc).__name__}: {exc}".split())[:300])
        return
    servable.signature = loaded.signature
    servable.metadata = {
        "format": loaded.file_format,
        "loaded_by": loaded.loaded_by,
        "keras_version": loaded.keras_version,
        "backend": loaded.backend,
        "load_seconds": round(time.perf_counter() - started, 3),
        "warmup_seconds": round(warmup_seconds, 3),
        "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    servable.batcher = Batcher(compiled, source.batching)
    servable.state = ModelState.AVAILABLE
    log.info("model %s version %s AVAILABLE (%s, %.2fs)", servable.name, servable.version,
             loaded.loaded_by, servable.metadata["load_seconds"])


def warm_up(compiled: CompiledModel, signature: Signature) -> float:
    """Call the model once on zeros; try larger sizes for variable dims. Returns seconds."""
    started = time.perf_counter()
    last_error: Exception | None = None
    for size in WARMUP_DIM_CANDIDATES:
        inputs = {spec.name: np.zeros([1] + [size if d is None else d for d in spec.shape[1:]],
                                      dtype=spec.dtype)
                  for spec in signature.inputs}
        try:
            compiled(inputs)
            return time.perf_counter() - started
        except Exception as exc:  # noqa: BLE001 - try the next size
            last_error = exc
            if not any(d is None for spec in signature.inputs for d in spec.shape[1:]):
                break
    raise RuntimeError(f"warm-up call failed: {' '.join(str(last_error).split())[:250]}")


def _fail(servable: ServableVersion, reason: str) -> None:
    servable.state = ModelState.FAILED
    servable.error = reason
    log.warning("model %s version %s FAILED: %s", servable.name, servable.version, reason)
