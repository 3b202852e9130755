"""The one data-plane function every surface calls: resolve, validate, batch, run."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.serving.registry import ModelRegistry, ServableVersion
from app.serving.tensors import Arrays, conform


@dataclass(frozen=True)
class InferenceResult:
    """Outputs of one request, keyed by output name in the model's output order."""

    model: str
    version: int
    outputs: dict[str, np.ndarray]
    rows: int


def resolve(registry: ModelRegistry, model: str | None, version: int | None) -> ServableVersion:
    """The AVAILABLE servable for a request (404/503 otherwise)."""
    return registry.resolve(model, version)


def infer(servable: ServableVersion, arrays: Arrays, max_rows: int) -> InferenceResult:
    """Validate named input arrays against the servable's signature and run them."""
    assert servable.signature is not None and servable.batcher is not None
    conformed, rows = conform(arrays, servable.signature, max_rows)
    outputs = servable.batcher.submit(conformed, rows)
    return InferenceResult(model=servable.name, version=servable.version, outputs=outputs, rows=rows)
