"""V2 JSON `data` decoded straight into numpy: taken only when the generic path would agree."""
from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import orjson
import pytest

from app.api import v2_codec
from app.api.v2_json import decode_v2_json
from tests.mutations import mutated


def same_as_generic(decoded: dict[str, Any], body: bytes) -> bool:
    """Whether `decoded` is what orjson makes of `body`, each input's `data` as np.asarray would read it."""
    data = orjson.loads(body)  # raises if the body is not valid JSON
    for got, want in zip(decoded["inputs"], data["inputs"]):
        if not isinstance(got, dict) or not isinstance(got.get("data"), np.ndarray):
            continue
        expected = np.asarray(want.pop("data"))
        tensor = got.pop("data")
        if expected.dtype != np.float64 or not np.array_equal(tensor, expected) or tensor.shape != expected.shape:
            return False
    return decoded == data


@pytest.mark.parametrize("body", [
    b'{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[0.5,1,2,3.25]}]}',
    b'{"id":"data","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[0.5,1],[2,3e0]]}]}',
    b'{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1.5]},'
    b'{"name":"b","shape":[3],"datatype":"FP64","data":[1,2,-3.5E-2]}],"outputs":[{"name":"y"}]}',
    b'{"inputs":[{"data" :\n [ 1.5 , 2 ] , "name":"x","parameters":{"p":"[data]"},"shape":[2],"datatype":"FP32"}]}',
    b'{"parameters":{"binary_data_output":true},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[2.5]}]}',
    json.dumps({"id": "r", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                                       "data": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]}]}, indent=2).encode(),
])
def test_numeric_data_decodes_to_the_arrays_the_generic_path_builds(body):
    decoded = decode_v2_json(body)
    assert decoded is not None
    assert all(isinstance(spec["data"], np.ndarray) for spec in decoded["inputs"])
    assert same_as_generic(decoded, body)


@pytest.mark.parametrize("body", [
    b'{"inputs":[{"name":"x","data":[1,2]}]}',  # only integers: numpy would keep int64
    b'{"inputs":[{"name":"x","data":[1.5,[2]]}]}',  # mixed depth
    b'{"inputs":[{"name":"x","data":[[1.5,2],[3]]}]}',  # ragged
    b'{"inputs":[{"name":"x","data":[1.5,true]}]}', b'{"inputs":[{"name":"x","data":[1.5,"2"]}]}',
    b'{"inputs":[{"name":"x","data":[1.5,]}]}', b'{"inputs":[{"name":"x","data":[NaN]}]}',
    b'{"inputs":[{"name":"x","data":[1.5]},{"name":"y","data":[1,2]}]}',  # one input not plain floats
    b'{"inputs":[{"name":"x","data":[1.5],"parameters":{"data":[2.5]}}]}',  # a `data` that is no input's
    b'{"inputs":[{"name":"x","data":[1.5],"data":[2.5]}]}',  # a duplicate key
    b'{"outputs":[{"name":"y","data":[1.5]}]}', b'{"inputs":{"data":[1.5]}}', b'[{"data":[1.5]}]',
    b'{"id":"x\\"","inputs":[{"name":"x","data":[1.5]}]}',  # an escape
    b'{"inputs":[{"name":"y","data":"\\u00010"}],"parameters":{"data":[1.5]}}',  # an escape like a placeholder
    b'{"inputs":[{"name":"x","data":[1.5]}]', b'{"inputs":[{"name":"x","data":[1.5]}]}x',
    b'{"inputs":[{"name":"x","data":1.5}]}', b'{"inputs":[{"name":"x"}]}', b'{}',
])
def test_anything_unusual_is_left_to_the_generic_path(body):
    assert decode_v2_json(body) is None


def test_random_mutations_never_decode_to_something_the_generic_path_would_not():
    rng = random.Random(11)
    seeds = [b'{"id":"a","inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[0.5,1.25,-3e-2,4,5.5,6]}]}',
             b'{"inputs":[{"name":"a","data":[[0.5],[1.5]],"shape":[2,1]},{"name":"b","data":[2.5]}],'
             b'"outputs":[{"name":"y","parameters":{"binary_data":true}}]}']
    alphabet = b'[],.-+eE0159 "{}:tnda\\'
    decoded_count = 0
    for _ in range(6000):
        body = mutated(rng, seeds, alphabet)
        decoded = decode_v2_json(body)
        if decoded is not None:
            decoded_count += 1
            assert same_as_generic(decoded, body), body
    assert decoded_count > 100  # harmless mutations (digits, spaces) still take the fast path


def test_v2_json_infer_answers_the_same_whichever_path_decodes_the_body(client, monkeypatch):
    x = np.random.default_rng(4).random((5, 4)).round(5)
    body = orjson.dumps({"id": "r1", "inputs": [{"name": "features", "datatype": "FP32", "shape": [5, 4],
                                                 "data": x.ravel()}]}, option=orjson.OPT_SERIALIZE_NUMPY)
    assert decode_v2_json(body) is not None
    fast = client.post("/v2/models/dense/infer", data=body, content_type="application/json")
    monkeypatch.setattr(v2_codec, "decode_v2_json", lambda _body: None)
    generic = client.post("/v2/models/dense/infer", data=body, content_type="application/json")
    assert fast.status_code == generic.status_code == 200
    assert fast.get_json() == generic.get_json()


@pytest.mark.parametrize("data, code", [([1.5, 2.5, 3.5], 400), ([0.5] * 21, 400)])
def test_a_fast_decoded_tensor_still_gets_the_shape_errors(client, data, code):
    body = orjson.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [5, 4], "data": data}]})
    assert decode_v2_json(body) is not None
    response = client.post("/v2/models/dense/infer", data=body, content_type="application/json")
    assert response.status_code == code and "holds" in response.get_json()["error"]


def test_fp64_data_beyond_float32_is_refused_over_the_fast_path(client):
    body = b'{"inputs":[{"name":"features","datatype":"FP64","shape":[1,4],"data":[1e39,0.5,0.5,0.5]}]}'
    assert decode_v2_json(body) is not None
    response = client.post("/v2/models/dense/infer", data=body, content_type="application/json")
    assert response.status_code == 400 and "range" in response.get_json()["error"]
