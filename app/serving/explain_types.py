"""The words of explanations, shared by the API and the gradient runtime (no TensorFlow here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app import errors

METHODS = ("integrated_gradients", "saliency", "gradient_x_input")
ARGMAX = "argmax"


class ExplainUnavailable(errors.BadRequest):
    """400: this version cannot be explained (no Keras model, no gradients); the message names why."""

    code = "explain_unavailable"


@dataclass(frozen=True)
class Target:
    """Which output value is explained: an output by name and a flat index into one row of it (None: argmax)."""

    output: str
    index: int | None = None


@dataclass(frozen=True)
class ExplainOptions:
    """A checked explain request: method, target, baselines per input (one row each), steps."""

    method: str
    target: Target
    baselines: dict[str, np.ndarray]  # input name -> one row, in the input's own space (token ids for Embedding)
    steps: int
    deadline: float  # time.monotonic() past which the work stops


@dataclass(frozen=True)
class RowExplanation:
    """One row's answer: target used, the model's value for it, attributions per input, completeness (IG)."""

    output: str
    index: int
    prediction: float
    attributions: dict[str, np.ndarray]
    completeness: dict[str, float] | None = None


@dataclass(frozen=True)
class Explanation:
    """Every row's explanation, with notes on how inputs were treated (e.g. attributed over an Embedding)."""

    rows: list[RowExplanation]
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> list[dict[str, Any]]:
        """The rows as JSON-ready dictionaries."""
        return [{"target": {"output": row.output, "index": row.index}, "prediction": row.prediction,
                 "attributions": row.attributions,
                 **({"completeness": row.completeness} if row.completeness is not None else {})}
                for row in self.rows]
