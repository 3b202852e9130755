"""The data plane: every surface decodes into an `InferRequest`, the `DataPlane` runs it.

The checks come in one order on every surface (docs/design.md):
1. envelope: the codec's `decode` (body size and encoding, JSON, fields and their types);
2. model: name and version or label (404 unknown, 503 not AVAILABLE);
3. inputs: tensor values (ragged, non-numeric), names, rows, shape and dtype against the signature.
A codec that finds a bad tensor while decoding keeps the error in `input_error`, raised at step 3.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app import errors
from app.observability import tracing
from app.observability.facts import note_rows, note_servable
from app.serving.registry import ModelRegistry
from app.serving.servable import ServableVersion
from app.serving.tensors import conform, instances_to_arrays
from app.serving.types import Arrays, Signature

SOLE_INPUT = ""  # the key of a tensor sent without a name: the model's only input


@dataclass(frozen=True)
class RequestedOutput:
    """One output a client asked for, and (V2) whether it wants it as binary data."""

    name: str
    binary: bool | None = None


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request, the same for every surface."""

    model: str | None
    version: int | None = None
    label: str | None = None  # serving.json `labels`: the version it names (never with `version`)
    inputs: Mapping[str, np.ndarray] = field(default_factory=dict)
    instances: list[Any] | None = None  # rows sent as objects keyed by input name
    outputs: tuple[RequestedOutput, ...] | None = None  # None: every output, in the model's order
    id: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    row_format: bool = False  # the tensors came as rows (`instances`): answer rows
    input_error: errors.ServingError | None = None


@dataclass(frozen=True)
class InferResponse:
    """The outputs of one request, keyed by output name, and who computed them."""

    model: str
    version: int
    outputs: dict[str, np.ndarray]
    rows: int
    id: str | None = None


class DataPlane:
    """Resolve the servable, check the inputs against its signature, batch and run."""

    def __init__(self, registry: ModelRegistry, max_request_rows: int):
        self.registry = registry
        self.max_request_rows = max_request_rows

    def resolve(self, model: str | None, version: int | None = None, label: str | None = None) -> ServableVersion:
        """The AVAILABLE servable a request names by version or label (404 unknown, 503 not available)."""
        return self.registry.resolve(model, version, label)

    def infer(self, request: InferRequest) -> InferResponse:
        """Run one request: model, then inputs, then the batcher; outputs as requested."""
        servable = self.registry.resolve(request.model, request.version, request.label)
        note_servable(servable.name, servable.version)
        signature = servable.signature
        assert signature is not None and servable.batcher is not None  # resolve() answers AVAILABLE ones
        arrays, rows = conform(bind_inputs(request, signature), signature, self.max_request_rows)
        note_rows(rows)
        if tracing.tracer is None:
            outputs = servable.batcher.submit(arrays, rows)
        else:  # child spans of the request's: the queue wait and the forward pass
            outputs = tracing.traced_submit(servable.batcher.submit, arrays, rows)
        return InferResponse(servable.name, servable.version, select_outputs(outputs, request.outputs), rows,
                             request.id)


def bind_inputs(request: InferRequest, signature: Signature) -> Arrays:
    """The request's tensors keyed by the model's input names (422 when they cannot be)."""
    if request.input_error is not None:
        raise request.input_error
    if request.instances is not None:
        return instances_to_arrays(request.instances, signature, check_bools=True)
    if SOLE_INPUT not in request.inputs:
        return dict(request.inputs)
    names = signature.input_names
    if len(names) != 1:
        raise errors.InputMismatch(
            f"this model has {len(names)} inputs ({', '.join(names)}): send the tensors keyed by input name",
            {"expected_inputs": list(names)}, code="missing_input")
    return {names[0]: request.inputs[SOLE_INPUT]}


def select_outputs(outputs: Arrays, requested: tuple[RequestedOutput, ...] | None) -> Arrays:
    """Every output, or the requested ones in request order (400 for an unknown name)."""
    if requested is None:
        return outputs
    unknown = [output.name for output in requested if output.name not in outputs]
    if unknown:
        raise errors.InvalidRequest(f"unknown output(s) {', '.join(map(repr, unknown))}; "
                                    f"the model's outputs are {', '.join(outputs)}",
                                    {"unknown": unknown, "outputs": list(outputs)})
    return {output.name: outputs[output.name] for output in requested}
