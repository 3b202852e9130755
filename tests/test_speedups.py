"""app._speedups (native/speedups.c): the C parser of JSON tensors, checked against the generic path."""
from __future__ import annotations

import math
import os
import random
import struct

import numpy as np
import orjson
import pytest

from native.pow5_table import entries

try:
    from app import _speedups
except ImportError:
    if os.environ.get("CI") == "true":
        raise  # CI builds them (make test): their tests must run there
    pytest.skip("the C helpers are not built (make native needs gcc)", allow_module_level=True)


@pytest.fixture(params=["four at a time", "one at a time"])
def conversion(request):
    """Run a test with short numbers converted four at a time (AVX2, where the CPU has it) and one at a time."""
    batches = _speedups.set_batch(request.param == "four at a time")
    if request.param == "four at a time" and not batches:
        pytest.skip("this CPU has no AVX2: numbers are converted one at a time")
    yield request.param
    _speedups.set_batch(True)


def parsed(text: bytes) -> np.ndarray | None:
    result = _speedups.parse(text)
    if result is None:
        return None
    buffer, shape, _ = result
    return np.frombuffer(buffer, dtype=np.float64).reshape(shape)


def generic(text: bytes) -> np.ndarray:
    return np.asarray(orjson.loads(text), dtype=np.float64)


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and got.tobytes() == want.tobytes()  # -0.0 and 0.0 differ here


def random_tokens(rng: random.Random, count: int) -> list[str]:
    """Numbers as clients write them: shortest reprs over every exponent, rounded decimals,
    long integers, explicit exponents, subnormals, signs."""
    tokens = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.25:
            value = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
            tokens.append(repr(value if math.isfinite(value) else 1.5))
        elif kind < 0.45:
            tokens.append(repr(rng.uniform(-1, 1)))
        elif kind < 0.65:
            tokens.append(f"{rng.uniform(-1000, 1000):.{rng.randint(0, 9)}f}")
        elif kind < 0.75:
            digits = rng.randint(1, 10 ** rng.randint(1, 19) - 1)
            tokens.append(f"{'-' if rng.random() < 0.5 else ''}{digits}{rng.choice('eE')}{rng.randint(-350, 290)}")
        elif kind < 0.85:
            tokens.append(str(rng.randint(2 ** 53 - 10, 10 ** 19 - 1)))
        elif kind < 0.9:
            tokens.append(repr(struct.unpack("d", struct.pack("Q", rng.getrandbits(52)))[0]))
        else:
            tokens.append(f"-{rng.randint(0, 99)}.{rng.randint(0, 9999):04d}e{rng.randint(-30, 30):+d}")
    return tokens


def test_numbers_convert_bit_for_bit_as_the_generic_path_converts_them(conversion):
    rng = random.Random(11)
    for _ in range(200):
        text = ("[" + ",".join(random_tokens(rng, 500)) + "]").encode()
        got = parsed(text)
        assert got is not None and same_bits(got, generic(text)), text[:200]


@pytest.mark.parametrize("token", [
    "2.2250738585072011e-308", "2.2250738585072012e-308", "4.9406564584124654e-324", "2.4703282292062327e-324",
    "2.4703282292062328e-324", "1.7976931348623157e308", "9007199254740993", "9007199254740992.5",
    "9007199254740993.0", "0.1", "-0", "-0.0", "0e5", "1e-400", "-1e-400", "7.2057594037927933e16", "1e23",
    "5e-324", "1e22", "1e-22", "4503599627370497.5", "9999999999999999999", "3.0e-5", "0.00019000160734350402",
    "-0.5", "12345678.12345678", "123456789.5", "1.000000000000000000", "0.0000000000000000001234",
])
def test_hard_cases_convert_like_the_generic_path(token, conversion):
    text = f"[{token}, 0.5]".encode()
    got = parsed(text)
    assert got is not None and same_bits(got, generic(text))


@pytest.mark.parametrize("text", [
    b"[1e400]", b"[-1e400]", b"[0.5, 99999999999999999999]", b"[0.5, 1.00000000000000000001]",  # range, digits
    b"[]", b"[[]]", b"[[0.5],[]]", b"[0.5,]", b"[,0.5]", b"[0.5 0.5]", b"[0.5,,0.5]", b"[[0.5],0.5]",
    b"[0.5,[0.5]]", b"[[0.5,0.5],[0.5]]", b"[01]", b"[-]", b"[1.]", b"[.5]", b"[+1]", b"[1e]", b"[1e+]",
    b"[--1]", b"[1-2]", b"[1.5.5]", b"[0x10]", b"[NaN]", b"[true]", b'["1"]', b"[{}]", b"[0.5]]", b"[[0.5]",
    b"[0.5] x", b"0.5", b"", b"[" * 33 + b"0.5" + b"]" * 33, b"[0.5\xff]",
])
def test_anything_but_a_regular_array_of_convertible_numbers_is_refused(text, conversion):
    assert _speedups.parse(text) is None


@pytest.mark.parametrize("token", ["01.5", "-00.5", "00", "1.", ".5", "+1.5", "1..5", "-.5", "1.5-", "--1.5", "1-.5",
                                   "0.-5", "1e", "1.5e+", "-", ".", "1.5.", "0x1.5"])
def test_a_malformed_number_among_many_short_ones_is_refused_wherever_it_stands(token, conversion):
    for position in (0, 1, 2, 3, 5, 70, 199):  # every lane of a batch of four, and past the first block
        numbers = ["0.25"] * 200
        numbers[position] = token
        assert _speedups.parse(("[" + ",".join(numbers) + "]").encode()) is None, (token, position)


def test_the_shape_and_whether_any_number_has_a_fraction_come_back_with_the_numbers():
    buffer, shape, has_fraction = _speedups.parse(b" [ [[1, 2]], [[3 ,4]] ] ")
    assert shape == (2, 1, 2) and has_fraction is False
    assert np.frombuffer(buffer, dtype=np.float64).tolist() == [1, 2, 3, 4]
    assert _speedups.parse(b"[1, 2e0]")[2] is True
    assert parsed(b"[" * 32 + b"0.5" + b"]" * 32).shape == (1,) * 32


def test_a_slice_of_the_body_is_parsed_in_place_and_the_bounds_are_checked():
    body = b'{"instances": [[0.5, 1.5]], "model": "m"}'
    start, stop = body.index(b"["), body.rindex(b"]") + 1
    assert parsed(body[start:stop]).tolist() == [[0.5, 1.5]]
    buffer, shape, _ = _speedups.parse(body, start, stop)
    assert shape == (1, 2) and np.frombuffer(buffer).tolist() == [0.5, 1.5]
    with pytest.raises(ValueError):
        _speedups.parse(body, stop, start)
    with pytest.raises(TypeError):
        _speedups.parse("[0.5]")


def test_long_texts_grow_the_buffer_and_keep_every_number_in_order(conversion):
    values = np.random.default_rng(4).random((300, 257)).round(5)
    text = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    assert same_bits(parsed(text), values)
    ones = b"[" + b",".join([b"1"] * 5000) + b"]"  # short numbers: more than the first guess of room
    assert parsed(ones).shape == (5000,)


def test_short_numbers_in_fours_mixed_with_long_ones_and_refused_ones_keep_their_places(conversion):
    rng = random.Random(5)
    for _ in range(300):  # lengths around the 8-byte batch limit, signs, rows that end mid-batch
        rows = [[rng.choice(["0.5", "-1.25", "12.5", "-0.125", "3.14159", "0.1234567", "-12345.67", "1e-3", "7",
                             "123456789.123", "0.12345678901234567", "-0", "-0.0", "0.0"])
                 for _ in range(rng.randint(1, 11))]] * rng.randint(1, 5)
        text = ("[" + ",".join("[" + ", ".join(row) + "]" for row in rows) + "]").encode()
        got = parsed(text)
        assert got is not None and same_bits(got, generic(text)), text


def test_the_power_of_five_table_is_the_one_eisel_lemire_needs():
    table = entries()
    assert len(table) == 308 + 342 + 1
    assert table[342] == 1 << 127  # 5**0, normalised
    assert table[342 + 1] == 5 << 125
    assert all(1 << 127 <= value < 1 << 128 for value in table)
