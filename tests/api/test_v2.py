"""Open Inference Protocol (V2) over the Flask test client: JSON and hand-built binary requests."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.model_builders import reference

HEADER = "Inference-Header-Content-Length"
FILES = {"dense": "dense.keras", "two_inputs": "two_inputs.keras", "two_outputs": "two_outputs.keras",
         "tokens": "tokens.keras"}


def oracle(model_repo: Path, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras in-process outputs keyed by output name."""
    out = reference(model_repo / FILES[model], inputs if len(inputs) > 1 else next(iter(inputs.values())))
    if isinstance(out, dict):
        return {name: np.asarray(value) for name, value in out.items()}
    return {"_": np.asarray(out)}


def tensor(name: str, array: np.ndarray, datatype: str) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}


def binary_body(inputs: list[tuple[str, np.ndarray, str]], **extra) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body: JSON header then each tensor's raw bytes."""
    header = {"inputs": [{"name": n, "datatype": d, "shape": list(a.shape),
                          "parameters": {"binary_data_size": a.nbytes}} for n, a, d in inputs], **extra}
    head = orjson.dumps(header)
    return head + b"".join(a.tobytes() for _, a, _ in inputs), {HEADER: str(len(head))}


def decode(response) -> dict[str, np.ndarray]:
    """Outputs of a V2 response (JSON or binary) as arrays."""
    size = response.headers.get(HEADER)
    body = response.data
    head = orjson.loads(body[:int(size)] if size else body)
    offset, arrays = int(size or 0), {}
    dtypes = {"FP32": np.float32, "INT64": np.int64, "BOOL": np.bool_}
    for output in head["outputs"]:
        nbytes = (output.get("parameters") or {}).get("binary_data_size")
        if nbytes is None:
            arrays[output["name"]] = np.asarray(output["data"], dtype=dtypes[output["datatype"]])
        else:
            arrays[output["name"]] = np.frombuffer(body, dtypes[output["datatype"]], nbytes // 4, offset)
            offset += nbytes
        arrays[output["name"]] = arrays[output["name"]].reshape(output["shape"])
    return arrays


def test_server_metadata_health_and_readiness(client):
    meta = client.get("/v2").get_json()
    assert meta["name"] and "binary_tensor_data" in meta["extensions"]
    assert "model_repository" in meta["extensions"]  # the index, load and unload (tests/api/test_repository.py)
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200  # STRICT_READINESS is off in the app fixture
    assert client.get("/v2/models/dense/ready").status_code == 200
    assert client.get("/v2/models/versioned/versions/1/ready").status_code == 200
    assert client.get("/v2/models/corrupt/ready").status_code == 400
    assert client.get("/v2/models/nope/ready").status_code == 404


def test_model_metadata_and_config(client):
    meta = client.get("/v2/models/dense").get_json()
    assert meta == {"name": "dense", "versions": ["1"], "platform": "keras",
                    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
                    "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}]}
    assert client.get("/v2/models/versioned/versions/2").get_json()["versions"] == ["1", "2"]
    assert client.get("/v2/models/tokens").get_json()["inputs"][0]["datatype"] == "INT32"
    config = client.get("/v2/models/two_inputs/config").get_json()
    assert config["max_batch_size"] == 16
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("a", "TYPE_FP32", [4]), ("b", "TYPE_FP32", [3])]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] >= 0


def test_repository_index(client, management_headers):
    index = client.post("/v2/repository/index", headers=management_headers).get_json()
    states = {(e["name"], e["version"]): e for e in index}
    assert states[("dense", "1")]["state"] == "READY"
    assert states[("versioned", "2")]["state"] == "READY"
    assert states[("corrupt", "1")]["state"] == "UNAVAILABLE" and states[("corrupt", "1")]["reason"]
    ready = client.post("/v2/repository/index", json={"ready": True}, headers=management_headers).get_json()
    assert all(e["state"] == "READY" for e in ready) and len(ready) == len(index) - 1


@pytest.mark.parametrize("nested", [False, True])
def test_json_infer_matches_keras_and_echoes_id(client, model_repo, nested):
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    entry = tensor("features", x, "FP32")
    if nested:
        entry["data"] = x.tolist()
    response = client.post("/v2/models/dense/infer", json={"id": "req-7", "inputs": [entry]})
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["id"] == "req-7" and body["model_name"] == "dense" and body["model_version"] == "1"
    assert body["outputs"][0]["shape"] == [3, 3] and body["outputs"][0]["datatype"] == "FP32"
    np.testing.assert_allclose(decode(response)["probs"], oracle(model_repo, "dense", {"features": x})["_"],
                               atol=1e-5)


def test_binary_infer_in_and_out(client, model_repo):
    x = np.random.default_rng(1).random((5, 4), dtype=np.float32)
    body, headers = binary_body([("features", x, "FP32")], parameters={"binary_data_output": True})
    response = client.post("/v2/models/versioned/versions/2/infer", data=body, headers=headers)
    assert response.status_code == 200, response.data
    assert int(response.headers[HEADER]) < len(response.data)
    np.testing.assert_allclose(decode(response)["probs"],
                               np.asarray(reference(model_repo / "versioned" / "2" / "model.keras", x)), atol=1e-5)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_binary_tensor_holding_nan_or_infinity_is_refused(client, value):
    x = np.ones((2, 4), dtype=np.float32)
    x[1, 2] = value
    body, headers = binary_body([("features", x, "FP32")])
    response = client.post("/v2/models/dense/infer", data=body, headers=headers)
    assert response.status_code == 400 and "NaN or Infinity" in response.get_json()["error"]


def test_two_inputs_and_chosen_output_encodings(client, model_repo):
    rng = np.random.default_rng(2)
    a, b = rng.random((2, 4), dtype=np.float32), rng.random((2, 3), dtype=np.float32)
    body, headers = binary_body([("a", a, "FP32")])
    head = orjson.loads(body[:int(headers[HEADER])])
    head["inputs"].append(tensor("b", b, "FP32"))  # one binary input, one JSON input
    new_head = orjson.dumps(head)
    response = client.post("/v2/models/two_inputs/infer", data=new_head + a.tobytes(),
                           headers={HEADER: str(len(new_head))})
    assert response.status_code == 200, response.data
    np.testing.assert_allclose(decode(response)["sum"], oracle(model_repo, "two_inputs", {"a": a, "b": b})["_"],
                               atol=1e-5)
    x = rng.random((4, 6), dtype=np.float32)
    response = client.post("/v2/models/two_outputs/infer", json={
        "inputs": [tensor("x", x, "FP32")],
        "outputs": [{"name": "score", "parameters": {"binary_data": True}}, {"name": "label"}]})
    outputs, expected = decode(response), oracle(model_repo, "two_outputs", {"x": x})
    assert [o["name"] for o in orjson.loads(response.data[:int(response.headers[HEADER])])["outputs"]] == [
        "score", "label"]
    for name in ("score", "label"):
        np.testing.assert_allclose(outputs[name], expected[name], atol=1e-5)


@pytest.mark.parametrize("datatype", ["INT32", "INT64"])
def test_int_inputs_binary_and_json(client, model_repo, datatype):
    ids = np.random.default_rng(3).integers(0, 20, (2, 10)).astype(np.int32 if datatype == "INT32" else np.int64)
    expected = oracle(model_repo, "tokens", {"tokens": ids.astype(np.int32)})["_"]
    body, headers = binary_body([("tokens", ids, datatype)])
    for response in (client.post("/v2/models/tokens/infer", data=body, headers=headers),
                     client.post("/v2/models/tokens/infer", json={"inputs": [tensor("tokens", ids, datatype)]})):
        assert response.status_code == 200, response.data
        np.testing.assert_allclose(decode(response)["sentiment"], expected, atol=1e-5)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_binary_request(client, encoding):
    x = np.ones((2, 4), dtype=np.float32)
    body, headers = binary_body([("features", x, "FP32")])
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    response = client.post("/v2/models/dense/infer", data=packed, headers={**headers, "Content-Encoding": encoding})
    assert response.status_code == 200, response.data
    plain = client.post("/v2/models/dense/infer", data=body, headers=headers)
    assert response.data == plain.data


def _error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.data
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    for word in words:
        assert word in body["error"], body["error"]


def test_errors(client):
    x = np.ones((2, 4), dtype=np.float32)
    post = client.post
    _error(post("/v2/models/dense/infer", json={"inputs": [{"name": "features", "datatype": "BYTES", "shape": [1],
                                                            "data": ["a"]}]}), 400, "BYTES")
    _error(post("/v2/models/dense/infer", json={"inputs": [tensor("features", np.ones((2, 5)), "FP32")]}), 400,
           "shape")
    _error(post("/v2/models/nope/infer", json={"inputs": [tensor("features", x, "FP32")]}), 404, "nope")
    _error(post("/v2/models/corrupt/infer", json={"inputs": [tensor("features", x, "FP32")]}), 503, "FAILED")
    _error(post("/v2/models/dense/infer", json={"inputs": [tensor("other", x, "FP32")]}), 400, "other")
    _error(post("/v2/models/two_inputs/infer", json={"inputs": [tensor("a", x, "FP32")]}), 400, "b")
    _error(post("/v2/models/dense/infer", json={"inputs": [{**tensor("features", x, "FP32"), "shape": [3, 4]}]}),
           400, "12")
    _error(post("/v2/models/dense/infer", json={"inputs": [tensor("features", x, "BF16")]}), 400, "BF16")
    _error(post("/v2/models/dense/infer", json={"inputs": [tensor("features", x, "FP32")],
                                                "outputs": [{"name": "nope"}]}), 400, "nope")
    _error(post("/v2/models/dense/infer", json={"inputs": [tensor("features", x > 0, "BOOL")]}), 400, "not booleans")
    _error(post("/v2/models/dense/infer", data=b"{not json"), 400)
    _error(post("/v2/models/dense/infer", json={"inputs": []}), 400, "inputs")
    _error(client.get("/v2/models/dense/unknown"), 404)


def test_binary_framing_errors(client):
    x = np.ones((2, 4), dtype=np.float32)
    body, headers = binary_body([("features", x, "FP32")])
    _error(client.post("/v2/models/dense/infer", data=body[:-4], headers=headers), 400, "ends")
    _error(client.post("/v2/models/dense/infer", data=body + b"xx", headers=headers), 400, "bytes")
    _error(client.post("/v2/models/dense/infer", data=body, headers={HEADER: "abc"}), 400, HEADER)
    _error(client.post("/v2/models/dense/infer", data=body, headers={HEADER: str(len(body) + 1)}), 400, HEADER)
    head = orjson.loads(body[:int(headers[HEADER])])
    head["inputs"][0]["parameters"]["binary_data_size"] = 16
    bad = orjson.dumps(head)
    _error(client.post("/v2/models/dense/infer", data=bad + x.tobytes(), headers={HEADER: str(len(bad))}), 400,
           "binary_data_size")


def test_output_binary_default_and_booleans_in_data(client):
    x = np.ones((1, 6), dtype=np.float32)
    response = client.post("/v2/models/two_outputs/infer", json={
        "inputs": [tensor("x", x, "FP32")], "parameters": {"binary_data_output": True},
        "outputs": [{"name": "label"}, {"name": "score", "parameters": {"binary_data": False}}]})
    head = orjson.loads(response.data[:int(response.headers[HEADER])])
    assert "id" not in head
    assert "binary_data_size" in head["outputs"][0]["parameters"] and "data" in head["outputs"][1]
    entry = {**tensor("features", np.ones((1, 4)), "FP32"), "data": [True, 1.0, 2.0, 3.0]}
    _error(client.post("/v2/models/dense/infer", json={"inputs": [entry], "parameters": {"binary_data_output": False}}),
           400, "boolean")


def test_fp64_values_beyond_the_models_float32_range_are_refused_not_answered_with_nulls(client):
    x = np.ones((1, 4), dtype=np.float64)
    x[0, 3] = 1e39
    body, headers = binary_body([("features", x, "FP64")])
    binary = client.post("/v2/models/dense/infer", data=body, headers=headers)
    as_json = client.post("/v2/models/dense/infer", json={"inputs": [
        {"name": "features", "shape": [1, 4], "datatype": "FP64", "data": x.ravel().tolist()}]})
    assert binary.status_code == as_json.status_code == 400
    assert "outside the float32 range" in binary.get_json()["error"]
