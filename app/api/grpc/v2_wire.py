"""ModelInferRequest off the wire with its raw_input_contents as views of the received bytes (no copies).

protobuf copies a bytes field twice on the way in (into the parsed message, then into a new `bytes` on
each access): 2 x 1 MB for one 1000x256 FP32 tensor. The top level of the message is scanned here
instead: raw_input_contents (field 7) entries become memoryviews of the received buffer, the rest (names,
shapes, parameters: small) is parsed by protobuf as usual.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.api.grpc import grpc_predict_v2_pb2 as pb

RAW_INPUT_CONTENTS = 7  # ModelInferRequest.raw_input_contents
LENGTH_DELIMITED, VARINT, FIXED64, FIXED32 = 2, 0, 1, 5


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def split_raw(data: bytes) -> tuple[bytes, tuple[memoryview, ...]]:
    """(the message's bytes without field 7, the field's entries as views of `data`)."""
    view, raw, kept, pos, start = memoryview(data), [], [], 0, 0
    while pos < len(data):
        field_start = pos
        tag, pos = _varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if wire == LENGTH_DELIMITED:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            if field == RAW_INPUT_CONTENTS:
                kept.append(view[start:field_start])
                raw.append(view[pos:pos + length])
                start = pos + length
            pos += length
        elif wire == VARINT:
            pos = _varint(data, pos)[1]
        elif wire in (FIXED64, FIXED32):
            pos += 8 if wire == FIXED64 else 4
        else:  # groups and invalid wire types: protobuf judges the whole message
            return data, ()
    if not raw:
        return data, ()
    kept.append(view[start:])
    return b"".join(kept), tuple(raw)


@dataclass(frozen=True)
class WireInferRequest:
    """A received ModelInferRequest: its message (raw_input_contents left out) and the raw tensors' views."""

    message: pb.ModelInferRequest
    raw: tuple[memoryview, ...]

    @classmethod
    def FromString(cls, data: bytes) -> WireInferRequest:  # noqa: N802 - protobuf's name: the request_deserializer
        """Parse `data` (the gRPC request bytes); raw_input_contents stay in `data`, viewed."""
        try:
            rest, raw = split_raw(data)
        except ValueError:  # let protobuf name the fault (DecodeError: the call fails as malformed)
            rest, raw = data, ()
        return cls(pb.ModelInferRequest.FromString(rest), raw)
