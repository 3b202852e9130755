"""Turn decoded JSON into numpy arrays and check them against a model's signature.

Conversions are vectorised (`np.asarray` on the nested lists); no per-element
Python loops run on the hot path. No TensorFlow here.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.errors import InputMismatch, InvalidTensor, TooManyRows
from app.serving.types import Arrays, Signature, TensorSpec


def to_array(value: Any, where: str, *, check_bools: bool = False) -> np.ndarray:
    """A JSON value (nested lists of numbers) as a numeric array, or InvalidTensor."""
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError) as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            raise InvalidTensor(f"{where} is ragged: all rows must have the same shape",
                                {"input": where}, code="ragged_tensor") from None
        raise InvalidTensor(f"{where} holds a number that does not fit 64 bits",
                            {"input": where}, code="non_numeric_value") from None
    if array.dtype.kind not in "iuf" or (check_bools and _holds_bool(value)):
        raise InvalidTensor(f"{where} must hold only numbers: {_describe_non_numeric(array)}",
                            {"input": where, "found": _describe_non_numeric(array)},
                            code="non_numeric_value")
    if array.ndim == 0:
        raise InvalidTensor(f"{where} must be a batch (a list), not a single number",
                            {"input": where}, code="invalid_tensor")
    return array


def _holds_bool(value: Any) -> bool:
    flat = np.asarray(value, dtype=object).ravel()
    return any(type(item) is bool for item in flat)


def _describe_non_numeric(array: np.ndarray) -> str:
    if array.dtype.kind == "b":
        return "booleans"
    if array.dtype.kind in "US":
        return "strings"
    flat = array.ravel()
    for item in flat:
        if item is None:
            return "nulls"
        if isinstance(item, str):
            return "strings"
        if isinstance(item, bool):
            return "booleans"
        if isinstance(item, (dict, list)):
            return "objects or mixed nesting"
    return "booleans" if array.dtype.kind in "iuf" else f"values of kind {array.dtype.kind!r}"


def instances_to_arrays(instances: Sequence[Any], signature: Signature, *, check_bools: bool) -> Arrays:
    """Row format: one entry per example; objects keyed by input name for several inputs."""
    names = signature.input_names
    if not isinstance(instances, np.ndarray) and instances and all(isinstance(row, Mapping) for row in instances):
        columns: dict[str, list[Any]] = {}
        for index, row in enumerate(instances):
            check_input_names(row.keys(), names, where=f"instances[{index}]")
            for name in names:
                columns.setdefault(name, []).append(row[name])
        return {name: to_array(columns[name], name, check_bools=check_bools) for name in names}
    if len(names) != 1:
        raise InputMismatch(
            f"this model has {len(names)} inputs ({', '.join(names)}): send each instance as an "
            "object keyed by input name", {"expected_inputs": list(names)}, code="missing_input")
    return {names[0]: to_array(instances, names[0], check_bools=check_bools)}


def columns_to_arrays(inputs: Any, signature: Signature, *, check_bools: bool) -> Arrays:
    """Columnar format: one batch tensor, or an object from input name to batch tensor."""
    names = signature.input_names
    if isinstance(inputs, Mapping):
        check_input_names(inputs.keys(), names, where="inputs")
        return {name: to_array(inputs[name], name, check_bools=check_bools) for name in names}
    if len(names) != 1:
        raise InputMismatch(
            f"this model has {len(names)} inputs ({', '.join(names)}): send `inputs` as an "
            "object keyed by input name", {"expected_inputs": list(names)}, code="missing_input")
    return {names[0]: to_array(inputs, names[0], check_bools=check_bools)}


def check_input_names(given: Any, expected: Sequence[str], where: str) -> None:
    """422 unknown_input / missing_input unless `given` names exactly the model's inputs."""
    given_set, expected_set = set(given), set(expected)
    unknown = sorted(given_set - expected_set)
    if unknown:
        raise InputMismatch(f"{where} names unknown input(s) {', '.join(map(str, unknown))}; "
                            f"the model's inputs are {', '.join(expected)}",
                            {"unknown": unknown, "expected_inputs": list(expected)}, code="unknown_input")
    missing = [name for name in expected if name not in given_set]
    if missing:
        raise InputMismatch(f"{where} lacks input(s) {', '.join(missing)}",
                            {"missing": missing, "expected_inputs": list(expected)}, code="missing_input")


def conform(arrays: Arrays, signature: Signature, max_rows: int) -> tuple[Arrays, int]:
    """Check names, batch size, shape and dtype; return arrays cast for the model and the row count.

    Finiteness is checked where non-finite values can come from: JSON parsers reject NaN and
    Infinity, so only binary tensors (`check_finite`) need a scan, which under load costs more
    than its arithmetic: numpy releases the GIL for it, and a busy worker's other threads take it.
    """
    if tuple(arrays) != signature.input_names:  # in the model's order: nothing to check
        check_input_names(arrays.keys(), signature.input_names, where="inputs")
    rows_by_input = {name: (array.shape[0] if array.ndim else 0) for name, array in arrays.items()}
    rows = max(rows_by_input.values(), default=0)
    if rows == 0:
        raise InvalidTensor("the batch is empty: send at least one row", code="empty_batch")
    if len(set(rows_by_input.values())) > 1:
        raise InputMismatch("inputs disagree on the number of rows", {"rows": rows_by_input},
                            code="batch_size_mismatch")
    if rows > max_rows:
        raise TooManyRows(f"{rows} rows exceed the limit of {max_rows} per request",
                          {"rows": rows, "max_rows": max_rows})
    return {spec.name: _conform_one(arrays[spec.name], spec) for spec in signature.inputs}, rows


def _conform_one(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    received = array.shape
    if len(received) != len(spec.shape) or (received[1:] != spec.row_shape if spec.row_shape is not None else any(
            want is not None and want != got for want, got in zip(spec.shape[1:], received[1:]))):
        expected = list(spec.shape)
        raise InputMismatch(
            f"input {spec.name!r} expects shape {_shape_text(expected)} but received {_shape_text(received)}",
            {"input": spec.name, "expected": expected, "received": list(received)}, code="shape_mismatch")
    target = spec.numpy_dtype
    if array.dtype.kind == "b" and target.kind != "b":
        raise InputMismatch(f"input {spec.name!r} takes {spec.dtype}, not booleans",
                            {"input": spec.name, "expected_dtype": spec.dtype}, code="dtype_mismatch")
    if target.kind in "iu" and array.dtype.kind == "f" and not np.array_equal(array, np.trunc(array)):
            raise InputMismatch(f"input {spec.name!r} takes integers ({spec.dtype}) but received fractions",
                                {"input": spec.name, "expected_dtype": spec.dtype}, code="dtype_mismatch")
    if target.kind in "iu" and array.size:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise _out_of_range(spec)
    if target.kind == "f" and array.dtype != target:  # float64 -> float32 turns 1e39 into inf
        try:
            with np.errstate(over="raise"):
                return np.ascontiguousarray(array, dtype=target)
        except FloatingPointError:
            raise _out_of_range(spec) from None
    return np.ascontiguousarray(array, dtype=target)


def _out_of_range(spec: TensorSpec) -> InputMismatch:
    return InputMismatch(f"input {spec.name!r} has values outside the {spec.dtype} range",
                         {"input": spec.name, "expected_dtype": spec.dtype}, code="dtype_mismatch")


def check_finite(array: np.ndarray, name: str) -> None:
    """400 non_finite_value when a float array holds NaN or Infinity."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidTensor(f"input {name!r} holds NaN or Infinity", {"input": name}, code="non_finite_value")


def _shape_text(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("null" if d is None else str(d) for d in shape) + "]"
