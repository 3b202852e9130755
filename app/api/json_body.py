"""JSON request bodies, parsed once by simdjson; tensors go straight into numpy.

`parse_object(body)` parses the whole text with simdjson (correctly rounded numbers, UTF-8 and
grammar checked, nesting bounded by simdjson's depth limit of 1024) and returns the top-level
object as lazy proxies. `tensors(body, document, paths)` turns the JSON arrays at the given paths
into arrays holding what numpy would make of the same values (`np.asarray(orjson.loads(text))`),
read by simdjson's `as_buffer` without a Python object per number. Anything else (booleans,
nulls, strings, objects, integers beyond int64, ragged nesting) takes the generic path, which
converts the already parsed values (`as_list`, never a second parse of the text) and words the
error. Callers convert everything they keep before the document is released: proxies must not
outlive the request (a parser refuses a new text while they live; `_parse` then takes a new one).
"""
from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import simdjson

from app import errors
from app.serving.tensors import to_array

Array, Object = simdjson.Array, simdjson.Object
# A parser keeps buffers sized for the largest text it has parsed (about 3.5 MB resident per MB of
# numeric text), so texts over this size get a parser of their own, freed afterwards.
KEPT_PARSER_LIMIT = 4 << 20
MAX_DIMS = 32
EXACT_INTEGERS = 2.0 ** 53  # every integer below this is exact in float64
_parsers = threading.local()


def parse_object(body: bytes) -> Object:
    """The body's top-level JSON object (proxies); 400 for invalid JSON or any other top-level value."""
    try:
        document = _parse(body)
    except (ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise invalid_json(body, exc) from None
    if not isinstance(document, Object):
        raise errors.InvalidRequest("the body must be a JSON object",
                                    {"received": type(document).__name__})
    return document


def invalid_json(body: bytes, exc: Exception) -> errors.ServingError:
    """The 400 for a text simdjson refused, worded from its own error (the text is not parsed again)."""
    reason = str(exc)
    if reason.startswith("EMPTY"):
        return errors.InvalidJSON("the body is empty: send a JSON object")
    if reason.startswith("DEPTH_ERROR"):
        return errors.InvalidJSON("the JSON nests deeper than 1024 levels", code="nesting_too_deep")
    if b"NaN" in body or b"Infinity" in body:
        return errors.InvalidTensor("NaN and Infinity are not JSON numbers; send finite numbers",
                                    code="non_finite_value")
    if reason.startswith("BIGINT_ERROR"):
        return errors.InvalidTensor("an integer does not fit 64 bits", code="non_numeric_value")
    if reason.startswith("NUMBER_ERROR"):
        return errors.InvalidJSON("a number is malformed, beyond float64's range (about 1.8e308) "
                                  "or an integer beyond 64 bits",
                                  code="invalid_number")
    return errors.InvalidJSON(f"the body is not valid JSON: {reason.split('  ')[0]}")


def fields(document: Object) -> dict[str, Any]:
    """The object's members by key, containers left as proxies; 400 when a key is repeated."""
    keys = list(document.keys())
    if len(set(keys)) != len(keys):
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise errors.InvalidRequest(f"key(s) {', '.join(map(repr, repeated))} given more than once",
                                    {"repeated": repeated})
    return {key: document[key] if "\x00" not in key else document.as_dict()[key] for key in keys}  # NUL: C keys


def plain(value: Any) -> Any:
    """A JSON value as Python objects (lists, dicts, numbers, strings)."""
    if isinstance(value, Array):
        return value.as_list()
    if isinstance(value, Object):
        return value.as_dict()
    return value


Path = tuple[str | int, ...]  # keys and indices from the document's root to a value


def tensors(body: bytes, document: Object, paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """The JSON array at each path as int64 or float64 with its nested shape; 400 otherwise.

    Fast: simdjson's `as_buffer` (no Python object per number) once the arrays at every depth are
    seen to have equal lengths. `as_buffer` flattens deeper arrays too (`[[1,2],[3,[4]]]` reads as
    four numbers), so the body's `[` count must be exactly what the regular tensors and the rest of
    the document hold; if not, or if a value is not a plain array of numbers, the generic path reads
    the parsed values and words the error. Each regular tensor's text holds at least its own count
    and the rest at least none, so a body holding exactly the tensors' counts needs no walk of the rest.
    """
    values = {name: _at(document, path) for name, path in paths.items()}
    fast = {name: _fast(value) for name, value in values.items()}
    if all(array is not None for array in fast.values()):
        shapes = {paths[name]: array.shape for name, array in fast.items()}  # type: ignore[union-attr]
        count = body.count(b"[")
        if count == sum(map(_regular_brackets, shapes.values())) or count == _brackets(document, (), shapes):
            return fast  # type: ignore[return-value]
    return {name: to_array(plain(value), name, check_bools=True) for name, value in values.items()}


def _at(node: Any, path: Path) -> Any:
    for step in path:
        node = node.as_dict()[step] if isinstance(step, str) and "\x00" in step else node[step]
    return node


def _fast(value: Any) -> np.ndarray | None:
    if not isinstance(value, Array):
        return None
    shape = _regular_shape(value)
    flat = _numbers(value) if shape is not None else None
    return None if flat is None or flat.size != math.prod(shape) else flat.reshape(shape)


def _brackets(node: Any, path: Path, shapes: dict[Path, tuple[int, ...]]) -> int:
    """How many `[` the text of `node` holds when the tensors at `shapes`' paths are regular."""
    shape = shapes.get(path)
    if shape is not None:
        return _regular_brackets(shape)
    if isinstance(node, Array):
        return 1 + sum(_brackets(child, (*path, index), shapes) for index, child in enumerate(node))
    if isinstance(node, Object):
        return sum(key.count("[") + _brackets(None if "\x00" in key else node[key], (*path, key), shapes)
                   for key in node.keys())  # noqa: SIM118 - a simdjson Object
    return node.count("[") if isinstance(node, str) else 0


def _regular_brackets(shape: tuple[int, ...]) -> int:  # a regular tensor's `[`: 1 + rows + rows * columns ...
    return sum(math.prod(shape[:depth]) for depth in range(len(shape)))


def _numbers(array: Array) -> np.ndarray | None:
    """Every number of the array, flat, with numpy's dtype for them: int64 when all are integers,
    else float64 (None: not all numbers, or an integer beyond int64).

    float64 holds every integer below 2**53 exactly, so an all-integer tensor read as float64
    reaches the model with the same values as from int64; only beyond that are integers read as
    int64 (`as_buffer("i")` refuses a fraction, which then leaves float64, numpy's choice too).
    """
    try:
        flat = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):  # a boolean, null, string or object
        return None
    if not flat.size or np.abs(flat).max() < EXACT_INTEGERS:
        return flat
    try:
        return np.frombuffer(array.as_buffer(of_type="i"), dtype=np.int64)
    except TypeError:  # a fraction or an exponent somewhere: float64, as numpy reads it
        return flat
    except ValueError:  # an integer beyond int64: numpy's own rules decide (uint64 or an error)
        return None


def _regular_shape(array: Array) -> tuple[int, ...] | None:
    """The nested shape when every array at each depth has the same length, else None."""
    shape: list[int] = []
    node: Any = array
    while isinstance(node, Array):
        shape.append(len(node))
        if not len(node) or len(shape) > MAX_DIMS:
            return None
        node = node[0]
    level: list[Any] = [array]
    for size in shape[:-1]:
        if any(len(node) != size for node in level):
            return None
        level = [child for node in level for child in node]
        if not all(isinstance(child, Array) for child in level):
            return None
    if any(len(node) != shape[-1] for node in level):
        return None
    return tuple(shape)


def _parse(body: bytes) -> Any:
    """`body` parsed by this thread's parser; by a fresh one for a large text, or while proxies of the last
    text still pin the thread's (it refuses to re-use its buffers then)."""
    if len(body) > KEPT_PARSER_LIMIT:
        return simdjson.Parser().parse(body)
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = simdjson.Parser()
    try:
        return parser.parse(body)
    except RuntimeError as exc:
        if "re-use a parser" not in str(exc):
            raise
        _parsers.parser = parser = simdjson.Parser()
        return parser.parse(body)
