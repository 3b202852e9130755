"""Decode a V2 JSON inference request with every input's `data` array straight into numpy.

The V2 body holds several arrays (`shape`, `data`, one input after another), so the tensors
are found by their key: each `"data": [`, up to the last `]` before the next `"` or `}`.
Each such text is parsed by `tensor_json.parse_float_tensor` (the C parser, else simdjson,
into one float64 buffer) and replaced in the body by a placeholder string; orjson decodes the rest. As in
`tensor_json`, anything unsure returns None and the generic path decides: a backslash
anywhere, a text that is not a regular array of numbers with a fraction or an exponent, or
a placeholder that does not land in an input's `data`.

Why the result equals the generic one: the envelope with placeholders is valid JSON, each
replaced text is a valid JSON array at a value's position, so the body is valid JSON with
the same structure; numpy would also have read each array as float64 of that nesting.
A placeholder (`"\\u0001"` and the tensor's index) cannot come from the body itself: U+0001
can only be written as an escape inside a JSON string, and the body has no backslash. Without
one, no string holds a quote either, so `"data"` is always a whole string token.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from app.api.tensor_json import parse_float_tensor

_DATA_KEY = b'"data"'
_PLACEHOLDER = "\x01"


def decode_v2_json(body: bytes) -> dict[str, Any] | None:
    """The decoded request with each input's `data` as a float64 array, or None for the generic path."""
    if b"\\" in body:
        return None
    pieces: list[bytes] = []
    tensors: list[np.ndarray] = []
    done = 0  # bytes already copied to `pieces`
    at = body.find(_DATA_KEY)
    while at >= 0:
        start = _array_start(body, at + len(_DATA_KEY))
        if start < 0:  # the string "data" as a value, or a key whose value is no array: left to orjson
            at = body.find(_DATA_KEY, at + 1)
            continue
        stop = min(_find_or_end(body, b'"', start), _find_or_end(body, b"}", start))
        end = body.rfind(b"]", start, stop) + 1
        tensor = parse_float_tensor(body, start, end) if end > start else None
        if tensor is None:
            return None
        pieces += [body[done:start], b'"\\u0001%d"' % len(tensors)]  # decodes to _PLACEHOLDER + index
        tensors.append(tensor)
        done = end
        at = body.find(_DATA_KEY, end)
    if not tensors:
        return None
    pieces.append(body[done:])
    try:
        header = orjson.loads(b"".join(pieces))
    except orjson.JSONDecodeError:
        return None
    return header if _put_back(header, tensors) else None


def _array_start(body: bytes, after_key: int) -> int:
    """Where the key's value starts when it is an array (after `:` and whitespace), else -1."""
    at = _skip_whitespace(body, after_key)
    if body[at:at + 1] != b":":
        return -1
    at = _skip_whitespace(body, at + 1)
    return at if body[at:at + 1] == b"[" else -1


def _skip_whitespace(body: bytes, at: int) -> int:
    while body[at:at + 1] in (b" ", b"\t", b"\r", b"\n"):
        at += 1
    return at


def _find_or_end(body: bytes, byte: bytes, start: int) -> int:
    at = body.find(byte, start)
    return len(body) if at < 0 else at


def _put_back(header: Any, tensors: list[np.ndarray]) -> bool:
    """Replace each input's placeholder by its tensor; False unless every placeholder was an input's data."""
    inputs = header.get("inputs") if isinstance(header, dict) else None
    if not isinstance(inputs, list):
        return False
    found = 0
    for spec in inputs:
        data = spec.get("data") if isinstance(spec, dict) else None
        if isinstance(data, str) and data.startswith(_PLACEHOLDER):
            spec["data"] = tensors[int(data[1:])]
            found += 1
    return found == len(tensors)
