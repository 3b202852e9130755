"""The JSON tensor decoder gives exactly what numpy makes of orjson's values, or the same 400."""
from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import errors
from app.api import json_body
from app.serving.tensors import to_array

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode(body: bytes) -> np.ndarray:
    document = json_body.parse_object(body)
    try:
        return json_body.tensors(body, document, {"x": ("instances",)})["x"]
    finally:
        document = None


def reference(body: bytes) -> np.ndarray:
    """What the generic path would read: orjson's values, then numpy's rules."""
    return to_array(orjson.loads(body)["instances"], "x", check_bools=True)


def same(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Same shape and the same numbers (integers exactly, floats to the bit, -0.0 included)."""
    if ours.shape != theirs.shape:
        return False
    if ours.dtype.kind in "iu" or theirs.dtype.kind in "iu":
        return ours.tolist() == theirs.tolist()
    return ours.tobytes() == theirs.astype(ours.dtype).tobytes()


def check_against_reference(body: bytes) -> None:
    try:
        expected = reference(body)
    except (errors.ServingError, orjson.JSONDecodeError) as exc:
        with pytest.raises(errors.ServingError) as raised:
            decode(body)
        assert raised.value.status == 400
        if isinstance(exc, errors.ServingError):
            assert raised.value.code == exc.code
        return
    assert same(decode(body), expected), body[:200]


numbers = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**64 - 1),
    st.sampled_from([0, -0, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**64 - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308, 1e-310]))
leaves = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=3))
nested = st.recursive(st.lists(numbers, max_size=4), lambda inner: st.lists(inner, max_size=3), max_leaves=24)
anything = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3), max_leaves=16)


@st.composite
def regular_tensors(draw) -> list:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    flat = draw(st.lists(numbers, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return np.array(flat, dtype=object).reshape(shape).tolist()


@FUZZ
@given(regular_tensors())
def test_regular_tensors_decode_exactly_as_numpy_reads_them(value):
    check_against_reference(json.dumps({"instances": value}).encode())


@FUZZ
@given(st.one_of(nested, anything))
def test_any_nesting_decodes_as_numpy_reads_it_or_answers_the_same_400(value):
    check_against_reference(json.dumps({"model": "m[", "instances": value}).encode())


@pytest.mark.parametrize("text", [
    b'[[1,2],[3,[4]]]', b'[[1,2],[[],[3,4]]]', b'[[1,2,3],[4]]', b'[[1,2],[3,4,5],[6]]', b'[[1],2]', b'[1,[2]]',
    b'[[[1]],[[2],[3]]]', b'[]', b'[[]]', b'[true, 1]', b'[1, null]', b'[18446744073709551615, 1]',
    b'[9007199254740993, 1, 2, 3]', b'[9007199254740993, 1.5]', b'[-0, 1]', b'[-0.0, 1]', b'[1e308, 1]'])
@pytest.mark.parametrize("envelope", [b'{"instances": %s}', b'{"model": "[[", "instances": %s, "k[": [[]]}'])
def test_hard_cases_decode_as_numpy_reads_them(text, envelope):
    check_against_reference(envelope % text)


@pytest.mark.parametrize("text", [b"[18446744073709551616]", b"[-9223372036854775809, 1.5]"])
def test_integers_beyond_64_bits_are_refused_not_rounded(text):
    """orjson would read them as floats; exact values or a 400, never a silently rounded integer."""
    with pytest.raises(errors.ServingError) as raised:
        decode(b'{"instances": ' + text + b'}')
    assert raised.value.status == 400


def test_large_integers_keep_their_value_whatever_the_other_rows_hold():
    alone = decode(b'{"instances": [[9007199254740993, 1, 2, 3]]}')
    beside = decode(b'{"instances": [[9007199254740993, 1, 2, 3]' + b', [1, 2, 3, 4]' * 40 + b']}')
    assert alone[0].tolist() == beside[0].tolist() == [9007199254740993, 1, 2, 3]


@pytest.mark.parametrize("body,code", [
    (b'{"instances": [1, NaN]}', "non_finite_value"), (b'{"instances": [Infinity]}', "non_finite_value"),
    (b'{"instances": [1e999]}', "invalid_number"), (b'{"instances": [01]}', "invalid_number"),
    (b'', "invalid_json"), (b'{"instances": [1,2]', "invalid_json"), (b'\xff', "invalid_json"),
    (b'[' * 2000 + b']' * 2000, "nesting_too_deep"), (b'[1]', "invalid_request"),
    (b'{"instances": [1], "instances": [2]}', "invalid_request")])
def test_invalid_json_is_a_400_worded_from_the_first_parse(body, code):
    with pytest.raises(errors.ServingError) as raised:
        json_body.fields(json_body.parse_object(body))
    assert raised.value.status == 400 and raised.value.code == code


def test_a_parser_pinned_by_live_proxies_is_replaced_not_refused():
    pinned = json_body.parse_object(b'{"instances": [1]}')
    again = json_body.parse_object(b'{"instances": [2]}')
    assert pinned["instances"][0] == 1 and again["instances"][0] == 2


def test_a_large_body_with_one_bad_byte_is_refused_without_a_python_object_per_number():
    """The error is worded from simdjson's own failure: the 30 MB text is never read a second time."""
    import tracemalloc

    body = b'{"instances": [' + b"0.12345678901234567," * 1_500_000 + b"1]x"
    tracemalloc.start()
    try:
        with pytest.raises(errors.InvalidJSON):
            json_body.parse_object(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(body) > 28e6 and peak < 1e6  # a float object per number would be over 36 MB
