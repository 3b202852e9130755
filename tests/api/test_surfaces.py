"""Every surface over one data plane: same statuses, no 500 on any body, a row's answer its own."""
from __future__ import annotations

import json
import random

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HEADER = "Inference-Header-Content-Length"
ROW = [1.0, 2.0, 3.0, 4.0]


def native(client, model, tensor, raw=None):
    body = raw if raw is not None else json.dumps({"model": model, "instances": tensor})
    return client.post("/predict", data=body, content_type="application/json")


def tfserving(client, model, tensor, raw=None):
    body = raw if raw is not None else json.dumps({"instances": tensor})
    return client.post(f"/v1/models/{model}:predict", data=body, content_type="application/json")


def v2(client, model, tensor, raw=None):
    if raw is None:
        array = np.asarray(tensor, dtype=object)
        datatype = "INT64" if model == "int64_identity" else "FP32"
        name = "ids" if model == "int64_identity" else "features"
        raw = json.dumps({"inputs": [{"name": name, "datatype": datatype, "shape": list(array.shape),
                                      "data": tensor}]})
    return client.post(f"/v2/models/{model}/infer", data=raw, content_type="application/json")


SURFACES = {"native": native, "tfserving": tfserving, "v2": v2}
BAD_BODIES = {  # the same mistake, in each surface's envelope
    "invalid JSON": ('{"model": "dense", "instances": [[1,2', '{"instances": [[1,2', '{"inputs": [{"name"'),
    "NaN": ('{"model": "dense", "instances": [[1,2,3,NaN]]}', '{"instances": [[1,2,3,NaN]]}',
            '{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1,4], "data": [1,2,3,NaN]}]}'),
    "empty body": ("", "", ""),
    "too deep": ("[" * 5000 + "]" * 5000,) * 3,
    "not an object": ("[1]", "[1]", "[1]"),
}


@pytest.mark.parametrize("mistake", sorted(BAD_BODIES))
def test_a_malformed_body_answers_the_same_status_on_every_surface(client, mistake):
    statuses = {name: call(client, "dense", None, raw=body).status_code
                for (name, call), body in zip(SURFACES.items(), BAD_BODIES[mistake])}
    assert set(statuses.values()) == {400}, statuses


@pytest.mark.parametrize("tensor", [[ROW], [ROW, [1.0]], [[1, 2], [3, [4]]], [["x"]], [[True]]])
def test_an_unknown_model_answers_404_on_every_surface_whatever_its_inputs(client, tensor):
    statuses = {name: call(client, "nope", tensor).status_code for name, call in SURFACES.items()}
    assert set(statuses.values()) == {404}, statuses


@pytest.mark.parametrize("tensor", [[ROW, [1.0]], [[1.5], []], [[1, 2], [3, [4]]], [["x", 1, 2, 3]], [[True, 1, 2, 3]],
                                    [[None] * 4]])
def test_a_bad_tensor_answers_400_on_every_surface(client, tensor):
    statuses = {name: call(client, "dense", tensor).status_code for name, call in SURFACES.items()}
    assert set(statuses.values()) == {400}, statuses


def _seeds() -> list[tuple[str, bytes, dict[str, str]]]:
    rows = [ROW, [0.5, -1.25, 3e-3, 1e2]]
    head = orjson.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 4],
                                     "parameters": {"binary_data_size": 32}}]})
    binary = head + np.asarray(rows, dtype="<f4").tobytes()
    return [("/predict", json.dumps({"model": "dense", "instances": rows}).encode(), {}),
            ("/predict", json.dumps({"model": "two_inputs", "inputs": {"a": [ROW], "b": [[1, 2, 3]]}}).encode(), {}),
            ("/v1/models/dense:predict", json.dumps({"inputs": rows}).encode(), {}),
            ("/v2/models/dense/infer", json.dumps({"id": "q", "inputs": [
                {"name": "features", "datatype": "FP32", "shape": [2, 4], "data": sum(rows, [])}]}).encode(), {}),
            ("/v2/models/dense/infer", binary, {HEADER: str(len(head))})]


def test_random_mutations_of_valid_bodies_never_answer_500_on_any_surface(client):
    rng = random.Random(1405)
    alphabet = b'[]{}",:.-+eE0123456789 tfnul\\'
    statuses: dict[int, int] = {}
    for _ in range(1500):
        path, body, headers = rng.choice(_seeds())
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(mutated) + 1)
            if rng.random() < 0.5 and at < len(mutated):
                mutated[at] = rng.choice(alphabet)
            else:
                mutated.insert(at, rng.choice(alphabet))
        response = client.post(path, data=bytes(mutated), content_type="application/json", headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (path, bytes(mutated)[:300], response.get_data()[:300])
        assert response.is_json
    assert statuses.get(200, 0) and statuses.get(400, 0)  # both kinds were exercised


float_rows = st.lists(st.floats(-1e6, 1e6, width=32), min_size=4, max_size=4)
int_rows = st.lists(st.integers(-2**63, 2**63 - 1), min_size=4, max_size=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("surface", sorted(SURFACES))
@pytest.mark.parametrize("model", ["dense", "int64_identity"])
def test_a_rows_answer_never_depends_on_the_rows_beside_it(client, surface, model, data):
    rows = data.draw(st.lists(int_rows if model == "int64_identity" else float_rows, min_size=2, max_size=12))
    call = SURFACES[surface]
    together = call(client, model, rows)
    assert together.status_code == 200, together.json
    answers = _answers(surface, together.json, len(rows))
    for index in sorted({0, len(rows) - 1}):
        alone = call(client, model, [rows[index]])
        assert _answers(surface, alone.json, 1)[0] == answers[index]
    if model == "int64_identity":
        assert answers == rows


def _answers(surface: str, body: dict, rows: int) -> list:
    if surface == "v2":
        output = body["outputs"][0]
        return np.asarray(output["data"]).reshape(output["shape"]).tolist()
    return body["predictions"]
