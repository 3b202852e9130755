"""The options of an explain request (`method`, `target`, `baseline`, `steps`), checked into ExplainOptions.

Method and steps are checked with the envelope, before the model is known; target and baseline
against the version's signature and the request's inputs. Every problem is a JSON 400.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from app import errors
from app.serving.explain_types import ARGMAX, METHODS, ExplainOptions, Target
from app.serving.types import Arrays, Signature

OPTION_KEYS = ("method", "target", "baseline", "steps")
DEFAULT_STEPS = 50


def method_and_steps(options: Mapping[str, Any], max_steps: int) -> tuple[str, int]:
    """The method (default integrated_gradients) and steps (default 50, 1..max_steps); 400 otherwise."""
    method = options.get("method", METHODS[0])
    if method not in METHODS:
        raise errors.InvalidRequest(f"unknown method {method!r}: use one of {', '.join(METHODS)}",
                                    {"methods": list(METHODS)}, code="invalid_method")
    steps = options.get("steps", DEFAULT_STEPS)
    if type(steps) is not int or not 1 <= steps <= max_steps:
        raise errors.InvalidRequest(f"steps must be an integer from 1 to {max_steps} (SERVING_MAX_EXPLAIN_STEPS)",
                                    {"steps": steps if type(steps) in (int, float) else None, "max_steps": max_steps},
                                    code="invalid_steps")
    return method, steps


def target_for(value: Any, signature: Signature) -> Target:
    """`"argmax"` (default), an index, an output name, or {"output", "index"}; 400 when it names nothing."""
    outputs = signature.output_names
    if value is None or value == ARGMAX:
        return Target(outputs[0])
    if isinstance(value, str):
        return Target(_output(value, outputs))
    if isinstance(value, dict) and set(value) <= {"output", "index"} and "output" in value:
        output = _output(value["output"], outputs)
        return Target(output, _index(value.get("index", ARGMAX), output, signature))
    if type(value) is int:
        if len(outputs) > 1:
            raise _bad_target(f"this model has {len(outputs)} outputs ({', '.join(outputs)}): name one, "
                              'as "target": "NAME" or {"output": "NAME", "index": I}', outputs)
        return Target(outputs[0], _index(value, outputs[0], signature))
    raise _bad_target('target must be "argmax", an output index, an output name or {"output", "index"}', outputs)


def baselines_for(value: Any, arrays: Arrays, signature: Signature) -> dict[str, np.ndarray]:
    """One baseline row per input: "zeros" (default), a number, an array of one row's shape, or an object
    of those keyed by input name; 400 `invalid_baseline` otherwise."""
    names = signature.input_names
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise _bad_baseline(f"baseline names unknown input(s) {', '.join(unknown)}; inputs: {', '.join(names)}")
        given = value
    elif isinstance(value, list) and len(names) > 1:
        raise _bad_baseline(f"this model has {len(names)} inputs: give the baseline as an object keyed by input name")
    else:
        given = {name: value for name in names}
    return {spec.name: _row(spec.name, given.get(spec.name), arrays[spec.name], spec.numpy_dtype)
            for spec in signature.inputs}


def options_for(method: str, steps: int, options: Mapping[str, Any], arrays: Arrays, signature: Signature,
                deadline: float) -> ExplainOptions:
    """The checked options of one request, given its conformed inputs."""
    return ExplainOptions(method, target_for(options.get("target"), signature),
                          baselines_for(options.get("baseline"), arrays, signature), steps, deadline)


def _row(name: str, value: Any, array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    shape = array.shape[1:]
    if value is None or value == "zeros":
        return np.zeros(shape, dtype=dtype)
    if isinstance(value, (bool, str)):
        raise _bad_baseline(f'the baseline of {name!r} must be "zeros", a number or an array shaped {list(shape)}')
    try:
        row = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _bad_baseline(f"the baseline of {name!r} is not a regular array of numbers") from None
    if row.ndim and row.shape != shape:
        raise _bad_baseline(f"the baseline of {name!r} is shaped {list(row.shape)}; one row of it is {list(shape)}",
                            {"input": name, "expected_shape": list(shape), "shape": list(row.shape)})
    if not np.all(np.isfinite(row)) or (np.issubdtype(dtype, np.integer) and not np.all(row == np.round(row))):
        raise _bad_baseline(f"the baseline of {name!r} must hold finite numbers"
                            + (" (token ids: integers)" if np.issubdtype(dtype, np.integer) else ""))
    if np.issubdtype(dtype, np.floating) and np.any(np.abs(row) > np.finfo(dtype).max):
        raise _bad_baseline(f"the baseline of {name!r} does not fit its dtype {dtype}")
    return np.broadcast_to(row, shape).astype(dtype)


def _output(name: Any, outputs: tuple[str, ...]) -> str:
    if name not in outputs:
        raise _bad_target(f"unknown output {name!r}; the model's outputs are {', '.join(outputs)}", outputs)
    return name


def _index(index: Any, output: str, signature: Signature) -> int | None:
    if index == ARGMAX:
        return None
    spec = signature.outputs[signature.output_names.index(output)]
    size = math.prod(spec.row_shape) if spec.row_shape is not None else None
    if type(index) is not int or index < 0 or (size is not None and index >= size):
        raise _bad_target(f"the target index of {output!r} must be an integer from 0 to "
                          f"{'its size - 1' if size is None else size - 1} (a flat index into one row)",
                          signature.output_names)
    return index


def _bad_target(message: str, outputs: tuple[str, ...]) -> errors.InvalidRequest:
    return errors.InvalidRequest(message, {"outputs": list(outputs)}, code="invalid_target")


def _bad_baseline(message: str, details: dict[str, Any] | None = None) -> errors.InvalidRequest:
    return errors.InvalidRequest(message, details, code="invalid_baseline")
