"""Decode a JSON body whose tensor is one plain array of numbers straight into numpy.

The generic path (`orjson.loads`, then `np.asarray`) builds a Python float for every number,
numpy reads each one back, and the garbage collector frees them: for a 32x256 request that is
about 230 us, more than the HTTP stack's whole request. For the common envelope
`{"model": ..., "instances": [[...], ...]}` (or `"inputs"`), this module parses only the
array with simdjson into one float64 buffer and never builds those objects.

It is conservative: whatever it is not sure of returns None, and the caller takes the generic
path, which stays the rule and words every error. It answers only when the result is exactly
what the generic path would give, which needs:
- the tensor to be the value of a top-level `instances` or `inputs` key, found as the text from
  the body's first `[` to its last `]`, outside any string (no backslash in the rest of the body,
  an even number of quotes before it), and the rest of the body to be valid JSON around it;
- the tensor's text to hold nothing but numbers, commas and brackets, in a regular nesting,
  with at least one fraction or exponent, so that numpy would have chosen float64 for it too.

The tensor's text is parsed by the C parser `app._speedups.parse` (native/speedups.c, built by
`make`): one pass checks the grammar and the nesting and converts every number, correctly
rounded. Where it is unsure (a number of more than 19 digits) or not built, simdjson parses
the text and the nesting is proven by its skeleton or by walking its arrays.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
import orjson
import simdjson

try:
    from app import _speedups as native
except ImportError:  # not built (no C compiler): simdjson parses every tensor
    native = None

TENSOR_KEYS = ("instances", "inputs")
_WHITESPACE = b" \t\r\n"
_NUMBER_BYTES = b"0123456789.eE+-" + _WHITESPACE  # deleting them leaves a tensor's skeleton: [ ] and ,
_FLOAT_MARKS = (b".", b"e", b"E")
# A parser is not thread-safe, so each thread keeps its own. A parser keeps buffers sized for the
# largest text it has parsed (about 3.5 MB resident per MB of numeric text), so texts over this
# size get a parser of their own, freed afterwards: at most ~14 MB a thread. (With a 1 MiB limit,
# a fresh parser's allocation and page faults cost a 2.7 MB request ~15% of its throughput.)
# (One shared parser behind a lock was tried: no faster, and a Python lock on every request.)
_KEPT_PARSER_LIMIT = 4 << 20
# The array walk of `_is_regular` costs about as much per array as the skeleton check per 400 bytes.
_BYTES_PER_WALKED_ARRAY = 400
_MAX_DIMS = 32  # numpy's limit is 64; deeper nesting is left to the generic path and its error
_parsers = threading.local()


def decode_tensor_body(body: bytes) -> dict[str, Any] | None:
    """The decoded body with its one tensor as a float64 array, or None to take the generic path."""
    start, end = body.find(b"["), body.rfind(b"]")
    if start < 0 or end < start:
        return None
    prefix, suffix = body[:start], body[end + 1:]
    if b"[" in suffix or b"\\" in prefix or b"\\" in suffix or prefix.count(b'"') % 2:
        return None
    key = _key_before(prefix)
    if key is None:
        return None
    envelope_text = prefix + b"null" + suffix
    if envelope_text.count(b'"%s"' % key.encode()) != 1:  # a duplicate key: the generic path decides
        return None
    try:
        envelope = orjson.loads(envelope_text)
    except orjson.JSONDecodeError:
        return None
    if type(envelope) is not dict or key not in envelope or envelope[key] is not None:
        return None
    tensor = parse_float_tensor(body, start, end + 1)
    if tensor is None:
        return None
    envelope[key] = tensor
    return envelope


def parse_float_tensor(body: bytes, start: int = 0, stop: int | None = None) -> np.ndarray | None:
    """The array in body[start:stop] as float64 when it is a regular array of numbers where numpy
    would choose float64 (it has a fraction or an exponent; all-integer tensors are left to the
    generic path, which keeps them int64), else None."""
    stop = len(body) if stop is None else stop
    if native is not None:
        parsed = native.parse(body, start, stop)
        if parsed is not None:
            buffer, shape, has_fraction = parsed
            return np.frombuffer(buffer, dtype=np.float64).reshape(shape) if has_fraction else None
    text = body[start:stop]  # for simdjson: no string, no object, and a fraction somewhere
    if b'"' in text or b"{" in text or not any(mark in text for mark in _FLOAT_MARKS):
        return None
    return parse_numeric_array(text)


def _key_before(prefix: bytes) -> str | None:
    """`instances` or `inputs` when the prefix ends with that key and its colon."""
    head = prefix.rstrip(_WHITESPACE)
    if not head.endswith(b":"):
        return None
    head = head[:-1].rstrip(_WHITESPACE)
    for key in TENSOR_KEYS:
        if head.endswith(b'"%s"' % key.encode()):
            return key
    return None


def parse_numeric_array(text: bytes) -> np.ndarray | None:
    """A regular, non-empty JSON array of numbers as float64 with its nested shape, else None."""
    try:
        document = _parser_for(text).parse(text)
        shape = _first_path_shape(document)
        if not 0 < len(shape) <= _MAX_DIMS or 0 in shape or not _is_regular(document, shape, text):
            return None
        # Either proof leaves exactly prod(shape) leaves; as_buffer raises TypeError on a non-number.
        flat = np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError):  # invalid JSON, a non-number, a number out of range
        # (simdjson raises RuntimeError for an integer over 64 bits, which the generic path reads)
        return None
    finally:
        document = None  # the parser refuses to parse again while a document from it is alive
    return flat.reshape(shape)


def _is_regular(document: Any, shape: tuple[int, ...], text: bytes) -> bool:
    """Whether the parsed array nests exactly as `shape` says, every leaf at the last level.

    Two proofs, the cheaper for the text: deleting the numbers must leave the skeleton of the
    shape (about 0.4 ns a byte); or, when the text has few arrays for its length (a batch of
    long rows), every array the shape names has its length, and the text has no other `[`
    (about 0.15 us an array).
    """
    arrays = _array_count(shape)
    if arrays * _BYTES_PER_WALKED_ARRAY > len(text):
        return text.translate(None, _NUMBER_BYTES) == skeleton(shape)
    return _count_brackets(text, arrays + 1) == arrays and _lengths_match(document, shape)


def _array_count(shape: tuple[int, ...]) -> int:
    """How many arrays a regular nesting of `shape` has: 1 + s1 + s1*s2 + ... (all but the numbers)."""
    total, level = 1, 1
    for size in shape[:-1]:
        level *= size
        total += level
    return total


def _count_brackets(text: bytes, limit: int) -> int:
    """The number of `[` in `text`, counting no further than `limit` (memchr, one call each)."""
    count, at = 0, text.find(b"[")
    while at >= 0 and count < limit:
        count += 1
        at = text.find(b"[", at + 1)
    return count


def _lengths_match(document: Any, shape: tuple[int, ...]) -> bool:
    """Every array at depth k has shape[k] entries (a number where an array belongs: TypeError)."""
    level = [document]
    last = len(shape) - 1
    for depth, size in enumerate(shape):
        below: list[Any] = []
        for node in level:
            if len(node) != size:
                return False
            if depth < last:
                below.extend(node)
        level = below
    return True


def _parser_for(text: bytes) -> simdjson.Parser:
    """This thread's parser, or a new one for a text too large to keep buffers for."""
    if len(text) > _KEPT_PARSER_LIMIT:
        return simdjson.Parser()
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = simdjson.Parser()
    return parser


def _first_path_shape(document: Any) -> tuple[int, ...]:
    """The lengths met going down the first element of each nested array."""
    shape: list[int] = []
    node = document
    while isinstance(node, simdjson.Array):
        shape.append(len(node))
        if not len(node):
            break
        node = node[0]
    return tuple(shape)


def skeleton(shape: tuple[int, ...]) -> bytes:
    """The brackets and commas of a regular nested array of `shape`, as JSON writes them."""
    level = b"[" + b"," * (shape[-1] - 1) + b"]"
    for size in reversed(shape[:-1]):
        level = b"[" + b",".join([level] * size) + b"]"
    return level
