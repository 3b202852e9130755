"""Numeric tensors decoded straight into numpy: taken only when the generic path would agree."""
from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from app.api import tensor_json
from app.api.tensor_json import decode_tensor_body, skeleton
from tests.mutations import mutated


@pytest.fixture(params=["C parser", "C parser, one at a time", "simdjson, skeleton", "simdjson, array walk"])
def regularity_proof(request, monkeypatch):
    """Run a test under the C parser (short numbers in fours, and one at a time) and under simdjson
    with each of its two proofs of regular nesting."""
    if request.param.startswith("C parser"):
        if tensor_json.native is None:
            pytest.skip("the C helpers are not built (make native needs gcc)")
        tensor_json.native.set_batch(request.param == "C parser")
        request.addfinalizer(lambda: tensor_json.native.set_batch(True))
    else:
        monkeypatch.setattr(tensor_json, "native", None)
    monkeypatch.setattr(tensor_json, "_BYTES_PER_WALKED_ARRAY", 10**9 if request.param.endswith("skeleton") else 0)
    return request.param


def generic(body: bytes, key: str) -> tuple[dict, np.ndarray]:
    """What the generic path makes of a body: orjson, then np.asarray on the tensor."""
    data = orjson.loads(body)
    return data, np.asarray(data[key])


@pytest.mark.parametrize("body, key, shape", [
    (b'{"model":"m","instances":[[0.5,1],[2,3.25]]}', "instances", (2, 2)),
    (b'{"inputs":[1.5,-0,2E-3,1e+2]}', "inputs", (4,)),
    (b'{"instances":[[[[0.5],[1]],[[2],[3]]]],"version":2}', "instances", (1, 2, 2, 1)),
    (b'{ "instances" : [ [ 1.5 , 2 ] ,\n [ 3 , 4e0 ] ] , "model" : "m" }', "instances", (2, 2)),
    (b'{"model":"a b:c","instances":[[1.5]]}', "instances", (1, 1)),
])
def test_a_plain_numeric_tensor_decodes_to_the_array_the_generic_path_builds(body, key, shape, regularity_proof):
    decoded = decode_tensor_body(body)
    data, expected = generic(body, key)
    assert decoded is not None
    assert decoded[key].dtype == expected.dtype == np.float64
    assert decoded[key].shape == expected.shape == shape
    assert np.array_equal(decoded[key], expected)
    assert {k: v for k, v in decoded.items() if k != key} == {k: v for k, v in data.items() if k != key}


@pytest.mark.parametrize("body", [
    b'{"instances":[[1,2],[3,4]]}',  # only integers: numpy would keep int64
    b'{"instances":[[1.5,2],[3]]}',  # ragged
    b'{"instances":[[1.5,2],[3,4],[5,6,7]]}',
    b'{"instances":[[1.5,2],[3,4,5],[6]]}',  # ragged with as many numbers as the shape holds
    b'{"instances":[[[1.5,2],[3,4]],[[5,6,7],[8]]]}',  # ... and as many arrays
    b'{"instances":[[1.5,[]],[[2,3],4]]}',  # mixed depth with the right counts
    b'{"instances":[[1.5,[2]],[3,4]]}',  # a nested array with one number: the same count of numbers
    b'{"instances":[[1.5,2],5]}', b'{"instances":[[[1.5]],[2]]}', b'{"instances":[[1.5],[[2]]]}',
    b'{"instances":[[[1.5],[2]],[[3],[4,5]]]}',
    b'{"instances":[[1.5,true]]}', b'{"instances":[[1.5,null]]}', b'{"instances":[[1.5,"2"]]}',
    b'{"instances":[{"a":1.5}]}',
    b'{"instances":[1.5,]}', b'{"instances":[01.5]}', b'{"instances":[+1.5]}', b'{"instances":[.5]}',
    b'{"instances":[1e999]}', b'{"instances":[NaN]}', b'{"instances":[Infinity]}',
    b'{"instances":[1.5,99999999999999999999999]}', b'{"instances":[1.5,-99999999999999999999999]}',  # > 64 bits
    b'{"instances":[1.5,\xff]}', b'{"instances":[1.5,2]\xff}',
    b'{"instances":' + b"[" * 100 + b"1.5" + b"]" * 100 + b"}",  # deeper than numpy allows
    b'{"instances":' + b"[" * 2000 + b"1.5" + b"]" * 2000 + b"}",  # deeper than simdjson allows
    b'{"instances":[]}', b'{"instances":[[],[]]}',
    b'{"model":"[x","instances":[[1.5]]}',  # a bracket inside a string
    b'{"model":"x\\"y","instances":[[1.5]]}',  # an escaped quote
    b'{"model":"[1.5]","instances":null}',
    b'{"instances":[[1.5]],"instances":null}',  # a duplicate key
    b'{"a":{"instances":[1.5]}}',  # not at the top level
    b'{"inputs":{"a":[1.5]}}', b'[[1.5]]', b'{"instances":[[1.5]]', b'{"instances":[[1.5]]}x',
    b'{"instances":[[1.5]],"b":[2.5]}',
])
def test_anything_unusual_is_left_to_the_generic_path(body, regularity_proof):
    assert decode_tensor_body(body) is None


def test_random_mutations_never_decode_to_something_the_generic_path_would_not(regularity_proof):
    rng = random.Random(7)
    seeds = [b'{"model":"m","instances":[[0.5,1.25,-3e-2],[4,5.5,6]]}',
             b'{"inputs":[[[0.5],[1.5]],[[2.5],[3.5]]],"version":1}',
             # long enough for the C parser to convert short numbers in fours (texts past 72 bytes)
             b'{"instances":[' + b",".join([b"[0.25,-1.5,0.125,3.75,-0.5,12.5,0.0625,-7.25]"] * 4) + b"]}"]
    alphabet = b'[],.-+eE0159 "{}:tn\\'
    decoded_count = 0
    for _ in range(6000):
        body = mutated(rng, seeds, alphabet)
        decoded = decode_tensor_body(body)
        if decoded is None:
            continue
        decoded_count += 1
        key = "instances" if "instances" in decoded else "inputs"
        data, expected = generic(body, key)  # raises if the mutation is not valid JSON
        assert expected.dtype == np.float64 and np.array_equal(decoded[key], expected), body
        assert {k: v for k, v in decoded.items() if k != key} == {k: v for k, v in data.items() if k != key}
    assert decoded_count > 100  # harmless mutations (digits, spaces) still take the fast path


def test_a_fraction_beside_an_integer_too_big_for_64_bits_still_gets_its_answer(client):
    response = client.post("/predict", data=b'{"model":"dense","instances":[[0.5,1,2,99999999999999999999999]]}',
                           content_type="application/json")
    assert response.status_code == 200 and len(response.get_json()["predictions"]) == 1


def test_the_skeleton_of_a_shape_is_how_json_nests_it():
    assert skeleton((3,)) == b"[,,]"
    assert skeleton((2, 2)) == b"[[,],[,]]"
    assert skeleton((1, 2, 1)) == b"[[[],[]]]"


def test_predict_answers_the_same_whichever_path_decodes_the_body(client):
    rows = np.random.default_rng(3).random((5, 4)).round(3)
    fast = orjson.dumps({"model": "dense", "instances": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
    escaped = fast.replace(b'"dense"', b'"dens\\u0065"')  # the same request, with an escape in it
    assert decode_tensor_body(fast) is not None and decode_tensor_body(escaped) is None
    first = client.post("/predict", data=fast, content_type="application/json")
    second = client.post("/predict", data=escaped, content_type="application/json")
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()


def test_a_ragged_fast_looking_body_still_gets_the_ragged_tensor_error(client):
    response = client.post("/predict", data=b'{"model":"dense","instances":[[0.5,1,2,3],[1.5,2,3]]}',
                           content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "ragged_tensor"


def test_threads_decoding_at_once_each_get_their_own_tensor():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    tensors = [rng.random((rng.integers(1, 40), 16)).round(4) for _ in range(64)]
    bodies = [orjson.dumps({"instances": t}, option=orjson.OPT_SERIALIZE_NUMPY) for t in tensors]
    with ThreadPoolExecutor(8) as pool:
        decoded = list(pool.map(lambda body: decode_tensor_body(body)["instances"], bodies * 20))
    assert all(np.array_equal(got, want) for got, want in zip(decoded, tensors * 20))


def test_under_simdjson_long_rows_are_proven_regular_by_walking_the_arrays_and_images_by_the_skeleton(monkeypatch):
    def must_not_run(*_args):
        raise AssertionError("the costlier proof ran")

    monkeypatch.setattr(tensor_json, "native", None)
    rng = np.random.default_rng(9)
    rows, image = rng.random((32, 256)).round(4), rng.random((1, 28, 28, 1)).round(4)
    rows_body, image_body = (orjson.dumps({"instances": t}, option=orjson.OPT_SERIALIZE_NUMPY) for t in (rows, image))
    monkeypatch.setattr(tensor_json, "skeleton", must_not_run)
    assert np.array_equal(decode_tensor_body(rows_body)["instances"], rows)
    monkeypatch.setattr(tensor_json, "skeleton", skeleton)
    monkeypatch.setattr(tensor_json, "_lengths_match", must_not_run)
    assert np.array_equal(decode_tensor_body(image_body)["instances"], image)


def test_a_text_over_the_kept_parser_limit_gets_a_parser_of_its_own_each_time(monkeypatch):
    created = []

    class CountedParser(tensor_json.simdjson.Parser):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self)

    rows = np.random.default_rng(2).random((40, 8)).round(4)
    small, big = (orjson.dumps({"instances": t}, option=orjson.OPT_SERIALIZE_NUMPY) for t in (rows[:1], rows))
    monkeypatch.setattr(tensor_json, "native", None)
    monkeypatch.setattr(tensor_json.simdjson, "Parser", CountedParser)
    monkeypatch.setattr(tensor_json, "_KEPT_PARSER_LIMIT", len(big) // 2)
    monkeypatch.setattr(tensor_json, "_parsers", tensor_json.threading.local())
    for _ in range(2):
        assert np.array_equal(decode_tensor_body(small)["instances"], rows[:1])
    assert len(created) == 1  # this thread's kept parser
    for _ in range(2):
        assert np.array_equal(decode_tensor_body(big)["instances"], rows)
    assert len(created) == 3 and tensor_json._parsers.parser is created[0]
