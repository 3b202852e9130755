"""The row (`instances`) and columnar (`inputs`) tensor formats of /predict and TF Serving's /v1.

Decoding needs no model: a bare tensor is keyed `SOLE_INPUT` (the model's only input), an
object of tensors by input name, and rows given as objects are kept as Python rows for the data
plane to bind to the signature. Outputs go back as rows (`predictions`) or columns (`outputs`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from app import errors
from app.api import json_body
from app.api.dataplane import SOLE_INPUT, InferRequest
from app.api.json_body import Array, Object


def decode_tensors(body: bytes, document: Object, key: str, model: str | None,
                   version: int | None, label: str | None = None) -> InferRequest:
    """The request whose tensors are `document[key]` (`instances` or `inputs`), envelope already checked."""
    value = document[key]
    row_format = key == "instances"
    if row_format and isinstance(value, Array) and len(value) and all(isinstance(row, Object) for row in value):
        return InferRequest(model, version, label, instances=json_body.plain(value), row_format=True)
    if isinstance(value, Object):
        paths = {name: (key, name) for name in json_body.fields(value)}
    else:
        paths = {SOLE_INPUT: (key,)}
    try:
        inputs = json_body.tensors(body, document, paths)
    except errors.ServingError as exc:  # a bad tensor is an input error: after the model is known
        return InferRequest(model, version, label, row_format=row_format, input_error=exc)
    return InferRequest(model, version, label, inputs=inputs, row_format=row_format)


def as_rows(outputs: dict[str, np.ndarray]) -> Any:
    """One entry per row; an object keyed by output name when there are several outputs."""
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    names = list(outputs)
    rows = len(next(iter(outputs.values())))
    return [{name: outputs[name][i] for name in names} for i in range(rows)]


def as_columns(outputs: dict[str, np.ndarray]) -> Any:
    """One batch tensor, or an object from output name to batch tensor."""
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs
