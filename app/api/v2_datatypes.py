"""Open Inference Protocol (V2) datatypes: the table between V2 names and numpy dtypes."""
from __future__ import annotations

import numpy as np

from app import errors

# V2 datatype -> numpy dtype (little-endian, as the binary extension sends them).
DATATYPES: dict[str, np.dtype] = {name: np.dtype(code) for name, code in (
    ("BOOL", "?"), ("INT8", "i1"), ("INT16", "<i2"), ("INT32", "<i4"), ("INT64", "<i8"),
    ("UINT8", "u1"), ("UINT16", "<u2"), ("UINT32", "<u4"), ("UINT64", "<u8"),
    ("FP16", "<f2"), ("FP32", "<f4"), ("FP64", "<f8"))}
_BY_NUMPY_NAME = {dtype.name: name for name, dtype in DATATYPES.items()}
SUPPORTED = ", ".join(DATATYPES)


def datatype_of(dtype: str | np.dtype) -> str:
    """The V2 datatype of a numpy dtype (or dtype name); BYTES for anything non-numeric."""
    return _BY_NUMPY_NAME.get(np.dtype(dtype).name if not isinstance(dtype, str) else dtype, "BYTES")


def v2_shape(shape: tuple[int | None, ...]) -> list[int]:
    """A signature shape with -1 for variable dimensions."""
    return [-1 if dim is None else int(dim) for dim in shape]


def numpy_dtype(datatype: object, name: str) -> np.dtype:
    """The numpy dtype of input `name`'s V2 datatype; 400 unsupported_datatype for BYTES or an unknown one."""
    if datatype == "BYTES":
        raise errors.BadRequest(f"input {name!r} is BYTES: string tensors are not supported; the models take "
                                f"numeric tensors ({SUPPORTED})", code="unsupported_datatype")
    if datatype not in DATATYPES:
        raise errors.BadRequest(f"input {name!r} has datatype {datatype!r}; supported: {SUPPORTED}",
                                code="unsupported_datatype")
    return DATATYPES[datatype]
