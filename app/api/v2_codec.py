"""Open Inference Protocol (V2) tensors: datatype tables, JSON and binary tensor data in and out.

Binary tensor data (Triton's extension): the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by raw little-endian tensors, in
input order, each sized by its `parameters.binary_data_size`. Decoding is
`np.frombuffer` over the body (no per-element Python loops).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app import errors
from app.api.responses import JSON_OPTIONS, parse_json
from app.api.v2_json import decode_v2_json
from app.serving.tensors import check_finite, to_array

HEADER_LENGTH = "Inference-Header-Content-Length"

# V2 datatype -> numpy dtype (little-endian, as the binary extension sends them).
DATATYPES: dict[str, np.dtype] = {name: np.dtype(code) for name, code in (
    ("BOOL", "?"), ("INT8", "i1"), ("INT16", "<i2"), ("INT32", "<i4"), ("INT64", "<i8"),
    ("UINT8", "u1"), ("UINT16", "<u2"), ("UINT32", "<u4"), ("UINT64", "<u8"),
    ("FP16", "<f2"), ("FP32", "<f4"), ("FP64", "<f8"))}
_BY_NUMPY_NAME = {dtype.name: name for name, dtype in DATATYPES.items()}
_SUPPORTED = ", ".join(DATATYPES)


def datatype_of(dtype: str | np.dtype) -> str:
    """The V2 datatype of a numpy dtype (or dtype name); BYTES for anything non-numeric."""
    return _BY_NUMPY_NAME.get(np.dtype(dtype).name if not isinstance(dtype, str) else dtype, "BYTES")


def v2_shape(shape: tuple[int | None, ...]) -> list[int]:
    """A signature shape with -1 for variable dimensions."""
    return [-1 if dim is None else int(dim) for dim in shape]


@dataclass(frozen=True)
class InferRequest:
    """A decoded V2 inference request: named input arrays and how to answer."""

    id: str | None
    arrays: dict[str, np.ndarray]
    outputs: list[tuple[str, bool | None]] | None  # requested (name, binary or None: the default), or None for all
    binary_output: bool  # request-level `binary_data_output`: the default for outputs that do not say


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """Decode a V2 body (JSON, or JSON header + binary tensors) into arrays shaped as declared."""
    size = _header_size(header_length, len(body))
    head = body if size == len(body) else body[:size]
    fast = decode_v2_json(head) if size == len(body) else None  # JSON `data` straight into numpy
    header, may_hold_bools = (fast, False) if fast is not None else parse_json(head)
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list) or not header["inputs"]:
        raise errors.InvalidRequest("the request must be a JSON object with a non-empty `inputs` list")
    check_bools = may_hold_bools and head.count(b"true") + head.count(b"false") > _envelope_bools(header)
    arrays: dict[str, np.ndarray] = {}
    offset = size
    for index, spec in enumerate(header["inputs"]):
        name, array, offset = _input(spec, index, body, offset, check_bools)
        if name in arrays:
            raise errors.InvalidRequest(f"input {name!r} is given twice")
        arrays[name] = array
    if offset != len(body):
        raise errors.InvalidRequest(f"{len(body) - offset} bytes of binary data follow the last input's "
                                    "binary_data_size; the sizes must add up to the body")
    request_id = header.get("id")
    return InferRequest(id=None if request_id is None else str(request_id), arrays=arrays,
                        outputs=_requested_outputs(header.get("outputs")),
                        binary_output=bool(_params(header, "request").get("binary_data_output", False)))


def _header_size(raw: str | None, body_size: int) -> int:
    if raw is None:
        return body_size
    try:
        size = int(raw)
    except ValueError:
        size = -1
    if not 0 < size <= body_size:
        raise errors.InvalidRequest(f"{HEADER_LENGTH} must be an integer in 1..{body_size} (the body's size)")
    return size


def _envelope_bools(header: dict[str, Any]) -> int:
    """Booleans in `parameters` objects: JSON true/false tokens beyond these may sit in tensor data.

    Counting them lets the per-element boolean check run only when data may hold booleans
    (tritonclient always sends `binary_data_output`/`binary_data` flags).
    """
    outputs = header.get("outputs") if isinstance(header.get("outputs"), list) else []
    count = 0
    for holder in [header, *header["inputs"], *outputs]:
        params = holder.get("parameters") if isinstance(holder, dict) else None
        if isinstance(params, dict):
            count += sum(isinstance(value, bool) for value in params.values())
    return count


def _params(holder: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    params = holder.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise errors.InvalidRequest(f"`parameters` of {where} must be an object")
    return params


def _input(spec: Any, index: int, body: bytes, offset: int, check_bools: bool) -> tuple[str, np.ndarray, int]:
    """One input as an array of its declared shape, and the binary offset after it."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise errors.InvalidRequest(f"inputs[{index}] must be an object with a `name`")
    name, datatype, shape = spec["name"], spec.get("datatype"), spec.get("shape")
    dtype = _dtype(datatype, name)
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise errors.InvalidRequest(f"input {name!r} needs a `shape`: a list of non-negative integers")
    params = _params(spec, f"input {name!r}")
    if "shared_memory_region" in params:
        raise errors.BadRequest("shared-memory inputs are not supported; send JSON or binary data")
    count = math.prod(shape)
    size = params.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size != count * dtype.itemsize:
            raise errors.InvalidRequest(f"input {name!r} has binary_data_size {size} but {datatype} shape "
                                        f"{shape} needs {count * dtype.itemsize} bytes")
        if offset + size > len(body):
            raise errors.InvalidRequest(f"the binary data of input {name!r} ends before its {size} bytes")
        raw = np.frombuffer(body, dtype=np.uint8 if datatype == "BOOL" else dtype, count=count, offset=offset)
        array = raw != 0 if datatype == "BOOL" else raw
        check_finite(array, name)  # raw bytes are the one source of NaN and Infinity
        return name, array.reshape(shape), offset + size
    if "data" not in spec:
        raise errors.InvalidRequest(f"input {name!r} has neither `data` nor a binary_data_size")
    array = _json_array(spec["data"], name, datatype, check_bools)
    if array.size != count:
        raise errors.InvalidRequest(f"input {name!r} holds {array.size} values but shape {shape} needs {count}")
    return name, array.reshape(shape), offset


def _dtype(datatype: Any, name: str) -> np.dtype:
    if datatype == "BYTES":
        raise errors.BadRequest(f"input {name!r} is BYTES: string tensors are not supported; the models take "
                                f"numeric tensors ({_SUPPORTED})", code="unsupported_datatype")
    if datatype not in DATATYPES:
        raise errors.BadRequest(f"input {name!r} has datatype {datatype!r}; supported: {_SUPPORTED}",
                                code="unsupported_datatype")
    return DATATYPES[datatype]


def _json_array(data: Any, name: str, datatype: str, check_bools: bool) -> np.ndarray:
    if datatype != "BOOL":
        return to_array(data if isinstance(data, (list, np.ndarray)) else [data], name, check_bools=check_bools)
    array = np.asarray(data)
    if array.dtype.kind != "b":
        raise errors.InvalidTensor(f"input {name!r} is BOOL: send true/false values", {"input": name})
    return array


def _requested_outputs(outputs: Any) -> list[tuple[str, bool | None]] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise errors.InvalidRequest("`outputs` must be a list of objects with a `name`")
    requested = []
    for output in outputs:
        params = _params(output, f"output {output['name']!r}")
        if params.get("classification"):
            raise errors.BadRequest("the classification extension is not supported")
        binary = params.get("binary_data")
        requested.append((output["name"], None if binary is None else bool(binary)))
    return requested


def encode_response(header: dict[str, Any], outputs: list[tuple[str, np.ndarray, bool]]) -> tuple[bytes, int | None]:
    """(body, header length or None): outputs as flat JSON `data` or as binary after the JSON header."""
    entries, buffers = [], []
    for name, array, binary in outputs:
        datatype = datatype_of(array.dtype)
        if datatype == "BYTES":
            raise errors.InternalError(f"output {name!r} has dtype {array.dtype}, which V2 cannot carry")
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        flat = np.ascontiguousarray(array, dtype=DATATYPES[datatype]).reshape(-1)
        if binary:
            buffers.append(flat.view(np.uint8).data)
            entry["parameters"] = {"binary_data_size": flat.nbytes}
        else:
            entry["data"] = flat
        entries.append(entry)
    head = orjson.dumps({**header, "outputs": entries}, option=JSON_OPTIONS)
    if not buffers:
        return head, None
    return b"".join([head, *buffers]), len(head)
