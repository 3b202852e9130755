"""The V2 gRPC messages as the data plane's InferRequest and back (raw and typed tensor contents)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app import errors
from app.api.dataplane import InferRequest, InferResponse, RequestedOutput
from app.api.grpc import grpc_predict_v2_pb2 as pb
from app.api.v2_datatypes import DATATYPES, datatype_of, numpy_dtype
from app.serving.tensors import check_finite

# V2 datatype -> the InferTensorContents field that carries it typed (FP16 travels raw only).
CONTENTS_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                  "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                  "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
                  "FP32": "fp32_contents", "FP64": "fp64_contents"}


def parameters(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """An InferParameter map as plain values."""
    return {key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
            for key, value in params.items()}


def version_number(text: str) -> int | None:
    """A V2 version string as a number ("" means the newest AVAILABLE one)."""
    if not text:
        return None
    if not text.isdigit():
        raise errors.InvalidRequest(f"model_version must be a positive integer, not {text!r}")
    return int(text)


def decode(message: pb.ModelInferRequest, raw: Sequence[bytes | memoryview] = ()) -> InferRequest:
    """A ModelInferRequest as an InferRequest (`raw`: its raw_input_contents when kept apart, app.api.grpc.v2_wire);
    a bad tensor is kept as its `input_error`."""
    if not message.inputs:
        raise errors.InvalidRequest("the request must have at least one input")
    raw = raw or message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise errors.InvalidRequest(f"raw_input_contents holds {len(raw)} tensors for {len(message.inputs)} "
                                    "inputs: send every input raw, or none")
    specs = []
    for tensor in message.inputs:
        if any(name == tensor.name for name, _, _ in specs) or not tensor.name:
            raise errors.InvalidRequest(f"input {tensor.name!r} is unnamed or given twice")
        if "shared_memory_region" in tensor.parameters:
            raise errors.BadRequest("shared-memory inputs are not supported; send raw or typed contents")
        if any(dim < 0 for dim in tensor.shape):
            raise errors.InvalidRequest(f"input {tensor.name!r} needs a shape of non-negative integers")
        specs.append((tensor.name, numpy_dtype(tensor.datatype, tensor.name), tuple(tensor.shape)))
    envelope = dict(model=message.model_name or None, version=version_number(message.model_version),
                    outputs=_requested_outputs(message.outputs), id=message.id or None,
                    parameters=parameters(message.parameters))
    try:
        inputs = {name: (_from_raw(raw[index], dtype, shape, name) if raw else
                         _from_contents(message.inputs[index], dtype, shape, name))
                  for index, (name, dtype, shape) in enumerate(specs)}
    except errors.ServingError as exc:  # a bad tensor is an input error: after the model is known
        return InferRequest(**envelope, input_error=exc)
    return InferRequest(**envelope, inputs=inputs)


def _from_raw(data: bytes | memoryview, dtype: np.dtype, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if len(data) != count * dtype.itemsize:
        raise errors.InvalidRequest(f"input {name!r} has {len(data)} bytes of raw contents but "
                                    f"{datatype_of(dtype)} shape {list(shape)} needs {count * dtype.itemsize}")
    array = np.frombuffer(data, dtype=np.uint8 if dtype.kind == "b" else dtype, count=count)
    array = array != 0 if dtype.kind == "b" else array
    check_finite(array, name)  # raw bytes are the one source of NaN and Infinity
    return array.reshape(shape)


def _from_contents(tensor: pb.ModelInferRequest.InferInputTensor, dtype: np.dtype, shape: tuple[int, ...],
                   name: str) -> np.ndarray:
    datatype = datatype_of(dtype)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise errors.InvalidRequest(f"input {name!r} is {datatype}: send it in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != math.prod(shape):
        raise errors.InvalidRequest(f"input {name!r} holds {len(values)} values but shape {list(shape)} "
                                    f"needs {math.prod(shape)}")
    wide = np.asarray(values, dtype=bool if dtype.kind == "b" else np.result_type(dtype, np.int64)
                      if dtype.kind in "iu" else dtype)
    if dtype.kind in "iu" and wide.size and (wide.min() < np.iinfo(dtype).min or wide.max() > np.iinfo(dtype).max):
        raise errors.InvalidTensor(f"input {name!r} has values outside the {datatype} range", {"input": name})
    array = wide.astype(dtype, copy=False)
    check_finite(array, name)
    return array.reshape(shape)


def _requested_outputs(outputs: Any) -> tuple[RequestedOutput, ...] | None:
    if not outputs:
        return None
    requested = []
    for output in outputs:
        params = parameters(output.parameters)
        if params.get("classification"):
            raise errors.BadRequest("the classification extension is not supported")
        if "shared_memory_region" in params:
            raise errors.BadRequest("shared-memory outputs are not supported")
        binary = params.get("binary_data")
        requested.append(RequestedOutput(output.name, None if binary is None else bool(binary)))
    return tuple(requested)


def encode(request: InferRequest, response: InferResponse) -> pb.ModelInferResponse:
    """Outputs in raw_output_contents; all typed (`contents`) when any is asked with binary_data false.

    raw_output_contents holds every output or none (the V2 gRPC protocol)."""
    default = bool(request.parameters.get("binary_data_output", True))
    wanted = [default if o.binary is None else o.binary for o in request.outputs] if request.outputs else [default]
    raw = all(wanted)
    message = pb.ModelInferResponse(model_name=response.model, model_version=str(response.version),
                                    id=response.id or "")
    for name, array in response.outputs.items():
        datatype = datatype_of(array.dtype)
        if datatype == "BYTES":
            raise errors.InternalError(f"output {name!r} has dtype {array.dtype}, which V2 cannot carry")
        tensor = message.outputs.add(name=name, datatype=datatype, shape=array.shape)
        flat = np.ascontiguousarray(array, dtype=DATATYPES[datatype]).reshape(-1)
        if raw:
            message.raw_output_contents.append(flat.tobytes())
        elif datatype in CONTENTS_FIELD:
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(flat.tolist())
        else:
            raise errors.InvalidRequest(f"output {name!r} is {datatype}: it travels raw only")
    return message
