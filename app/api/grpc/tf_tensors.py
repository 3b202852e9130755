"""TensorFlow's TensorProto as numpy and back: dtype, tensor_shape, tensor_content and the typed fields."""
from __future__ import annotations

import math

import numpy as np

from app import errors
from app.api.grpc import tfserving_apis_pb2 as pb
from app.serving.tensors import check_finite

# DataType -> (numpy dtype, the typed field that carries it when tensor_content is empty)
DTYPES: dict[int, tuple[np.dtype, str]] = {
    pb.DT_FLOAT: (np.dtype("<f4"), "float_val"), pb.DT_DOUBLE: (np.dtype("<f8"), "double_val"),
    pb.DT_HALF: (np.dtype("<f2"), "half_val"), pb.DT_INT8: (np.dtype("i1"), "int_val"),
    pb.DT_INT16: (np.dtype("<i2"), "int_val"), pb.DT_INT32: (np.dtype("<i4"), "int_val"),
    pb.DT_INT64: (np.dtype("<i8"), "int64_val"), pb.DT_UINT8: (np.dtype("u1"), "int_val"),
    pb.DT_UINT16: (np.dtype("<u2"), "int_val"), pb.DT_UINT32: (np.dtype("<u4"), "uint32_val"),
    pb.DT_UINT64: (np.dtype("<u8"), "uint64_val"), pb.DT_BOOL: (np.dtype("?"), "bool_val")}
DATA_TYPES: dict[str, int] = {dtype.name: data_type for data_type, (dtype, _) in DTYPES.items()}
SUPPORTED = ", ".join(pb.DataType.Name(t) for t in DTYPES)


def data_type(dtype: str | np.dtype) -> int:
    """The DataType of a numpy dtype (DT_INVALID for anything else)."""
    return DATA_TYPES.get(np.dtype(dtype).name, pb.DT_INVALID)


def shape_proto(shape: tuple[int | None, ...]) -> pb.TensorShapeProto:
    """A TensorShapeProto, -1 for variable dimensions."""
    return pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=-1 if d is None else int(d)) for d in shape])


def to_array(tensor: pb.TensorProto, name: str) -> np.ndarray:
    """A TensorProto as numpy: tensor_content when set, else the typed field (one value fills the shape)."""
    if tensor.dtype not in DTYPES:
        kind = pb.DataType.Name(tensor.dtype) if tensor.dtype in pb.DataType.values() else str(tensor.dtype)
        raise errors.BadRequest(f"input {name!r} is {kind}; supported: {SUPPORTED}", code="unsupported_datatype")
    if tensor.tensor_shape.unknown_rank or any(d.size < 0 for d in tensor.tensor_shape.dim):
        raise errors.InvalidRequest(f"input {name!r} needs a known shape of non-negative sizes")
    dtype, field = DTYPES[tensor.dtype]
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    count = math.prod(shape)
    if tensor.tensor_content:
        if len(tensor.tensor_content) != count * dtype.itemsize:
            raise errors.InvalidRequest(f"input {name!r} has {len(tensor.tensor_content)} bytes of tensor_content "
                                        f"but shape {list(shape)} needs {count * dtype.itemsize}")
        array = np.frombuffer(tensor.tensor_content, dtype=dtype, count=count)
    else:
        values = getattr(tensor, field)
        if len(values) not in (count, 1) or (count == 0 and len(values)):
            raise errors.InvalidRequest(f"input {name!r} holds {len(values)} values in {field} but shape "
                                        f"{list(shape)} needs {count}")
        if tensor.dtype == pb.DT_HALF:  # half_val holds the float16 bit patterns
            array = np.asarray(values, dtype=np.uint16).view(np.float16)
        else:
            wide = np.asarray(values, dtype=np.int64 if dtype.kind == "i" else np.uint64 if dtype.kind == "u"
                              else dtype)
            if dtype.kind in "iu" and wide.size and (wide.min() < np.iinfo(dtype).min
                                                     or wide.max() > np.iinfo(dtype).max):
                raise errors.InvalidTensor(f"input {name!r} has values outside the {dtype.name} range",
                                           {"input": name})
            array = wide.astype(dtype, copy=False)
        if len(values) == 1 and count != 1:
            array = np.full(count, array[0], dtype=dtype)
    check_finite(array, name)
    return array.reshape(shape)


def to_proto(array: np.ndarray) -> pb.TensorProto:
    """A numpy array as a TensorProto with tensor_content (little-endian), as tf.make_ndarray reads it."""
    kind = data_type(array.dtype)
    if kind == pb.DT_INVALID:
        raise errors.InternalError(f"an output has dtype {array.dtype}, which a TensorProto here cannot carry")
    content = np.ascontiguousarray(array, dtype=DTYPES[kind][0]).tobytes()
    return pb.TensorProto(dtype=kind, tensor_shape=shape_proto(array.shape), tensor_content=content)
