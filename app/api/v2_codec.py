"""Open Inference Protocol (V2) tensors: datatype tables, JSON and binary tensor data in and out.

Binary tensor data (Triton's extension): the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by raw little-endian tensors, in
input order, each sized by its `parameters.binary_data_size`. Decoding is
`np.frombuffer` over the body (no per-element Python loops).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from app import errors
from app.api import json_body
from app.api.dataplane import InferRequest, InferResponse, RequestedOutput
from app.api.responses import JSON_OPTIONS
from app.api.v2_datatypes import DATATYPES, datatype_of, numpy_dtype
from app.serving.tensors import check_finite

HEADER_LENGTH = "Inference-Header-Content-Length"

def decode(body: bytes, header_length: str | None, model: str, version: int | None) -> InferRequest:
    """A V2 body (JSON, or a JSON header then binary tensors) as an InferRequest of declared shapes."""
    size = _header_size(header_length, len(body))
    head = body if size == len(body) else body[:size]
    document = json_body.parse_object(head)
    header = json_body.fields(document)
    specs = header.get("inputs")
    if not isinstance(specs, json_body.Array) or not len(specs):
        raise errors.InvalidRequest("the request must be a JSON object with a non-empty `inputs` list")
    declared, offset, binary = [], size, {}
    for index in range(len(specs)):
        name, dtype, shape, raw_size = _input_spec(specs[index], index)
        if name in (d[0] for d in declared):
            raise errors.InvalidRequest(f"input {name!r} is given twice")
        if raw_size is not None:
            if offset + raw_size > len(body):
                raise errors.InvalidRequest(f"the binary data of input {name!r} ends before its {raw_size} bytes")
            binary[name] = (offset, raw_size)
            offset += raw_size
        declared.append((name, dtype, shape, index))
    if offset != len(body):
        raise errors.InvalidRequest(f"{len(body) - offset} bytes of binary data follow the last input's "
                                    "binary_data_size; the sizes must add up to the body")
    request_id = header.get("id")
    parameters = _params(header, "request")
    envelope = dict(model=model, version=version, outputs=_requested_outputs(header.get("outputs")),
                    id=None if request_id is None else str(request_id), parameters=parameters)
    try:
        inputs = _arrays(body, head, document, declared, binary)
    except errors.ServingError as exc:  # a bad tensor is an input error: after the model is known
        return InferRequest(**envelope, input_error=exc)
    return InferRequest(**envelope, inputs=inputs)


def _input_spec(spec: Any, index: int) -> tuple[str, np.dtype, list[int], int | None]:
    """(name, dtype, shape, binary size or None) of one entry of `inputs`; 400 when malformed."""
    if not isinstance(spec, json_body.Object):
        raise errors.InvalidRequest(f"inputs[{index}] must be an object with a `name`")
    fields = json_body.fields(spec)
    name, datatype, shape = fields.get("name"), fields.get("datatype"), json_body.plain(fields.get("shape"))
    if not isinstance(name, str) or not name:
        raise errors.InvalidRequest(f"inputs[{index}] must be an object with a `name`")
    dtype = numpy_dtype(datatype, name)
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise errors.InvalidRequest(f"input {name!r} needs a `shape`: a list of non-negative integers")
    params = _params(fields, f"input {name!r}")
    if "shared_memory_region" in params:
        raise errors.BadRequest("shared-memory inputs are not supported; send JSON or binary data")
    count = math.prod(shape)
    size = params.get("binary_data_size")
    if size is None:
        if "data" not in fields:
            raise errors.InvalidRequest(f"input {name!r} has neither `data` nor a binary_data_size")
        return name, dtype, shape, None
    if type(size) is not int or size != count * dtype.itemsize:
        raise errors.InvalidRequest(f"input {name!r} has binary_data_size {size} but {datatype} shape "
                                    f"{shape} needs {count * dtype.itemsize} bytes")
    return name, dtype, shape, size


def _arrays(body: bytes, head: bytes, document: Any, declared: list[tuple[str, np.dtype, list[int], int]],
            binary: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Every input's array in its declared shape: binary ones from the body, JSON ones from `data`."""
    paths = {name: ("inputs", index, "data") for name, dtype, _, index in declared
             if name not in binary and dtype.kind != "b"}
    arrays = json_body.tensors(head, document, paths) if paths else {}
    out = {}
    for name, dtype, shape, index in declared:
        if name in binary:
            offset, size = binary[name]
            raw = np.frombuffer(body, dtype=np.uint8 if dtype.kind == "b" else dtype, count=math.prod(shape),
                                offset=offset)
            array = raw != 0 if dtype.kind == "b" else raw
            check_finite(array, name)  # raw bytes are the one source of NaN and Infinity
        elif dtype.kind == "b":
            array = _bool_array(json_body.plain(document["inputs"][index]["data"]), name)
        else:
            array = arrays[name]
        if array.size != math.prod(shape):
            raise errors.InvalidRequest(f"input {name!r} holds {array.size} values but shape {shape} needs "
                                        f"{math.prod(shape)}")
        out[name] = array.reshape(shape)
    return out


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


def _params(holder: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = json_body.plain(holder.get("parameters")) or {}
    if not isinstance(params, dict):
        raise errors.InvalidRequest(f"`parameters` of {where} must be an object")
    return params


def _bool_array(data: Any, name: str) -> np.ndarray:
    array = np.asarray(data if isinstance(data, list) else [data], dtype=object)
    if not all(type(item) is bool for item in array.ravel()):
        raise errors.InvalidTensor(f"input {name!r} is BOOL: send true/false values", {"input": name})
    return array.astype(bool)


def _requested_outputs(outputs: Any) -> tuple[RequestedOutput, ...] | None:
    outputs = json_body.plain(outputs)
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
        requested.append(RequestedOutput(output["name"], None if binary is None else bool(binary)))
    return tuple(requested)


def encode(request: InferRequest, response: InferResponse) -> tuple[bytes, int | None]:
    """(body, header length or None): outputs as flat JSON `data`, or binary after the JSON header."""
    header: dict[str, Any] = {"model_name": response.model, "model_version": str(response.version)}
    if response.id is not None:
        header["id"] = response.id
    default = bool(request.parameters.get("binary_data_output", False))
    flags = {o.name: o.binary for o in request.outputs or ()}
    outputs = [(name, array, default if flags.get(name) is None else bool(flags[name]))
               for name, array in response.outputs.items()]
    return encode_response(header, outputs)


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
