"""TensorFlow Serving REST API over the Flask test client, with api_rest's documented request shapes."""
from __future__ import annotations

import numpy as np
import orjson
import pytest

from tests.model_builders import reference


def post(client, url: str, payload) -> tuple[int, dict]:
    """POST like `curl -d` does (no JSON Content-Type), as TF Serving's examples do."""
    response = client.post(url, data=orjson.dumps(payload), content_type="application/x-www-form-urlencoded")
    return response.status_code, orjson.loads(response.data)


def test_model_status_every_version_and_one(client):
    response = client.get("/v1/models/versioned")
    assert response.status_code == 200
    assert response.get_json() == {"model_version_status": [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}} for v in ("1", "2")]}
    one = client.get("/v1/models/versioned/versions/2").get_json()["model_version_status"]
    assert [s["version"] for s in one] == ["2"]
    failed = client.get("/v1/models/corrupt").get_json()["model_version_status"][0]
    assert failed["state"] == "END" and failed["status"]["error_code"] != "OK" and failed["status"]["error_message"]


def test_metadata_signature_def(client):
    body = client.get("/v1/models/two_inputs/metadata").get_json()
    assert body["model_spec"] == {"name": "two_inputs", "signature_name": "", "version": "1"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert set(sig["inputs"]) == {"a", "b"} and set(sig["outputs"]) == {"sum"}
    assert sig["inputs"]["a"]["dtype"] == "DT_FLOAT"
    assert sig["inputs"]["a"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}, {"size": "4", "name": ""}]
    tokens = client.get("/v1/models/tokens/versions/1/metadata").get_json()
    assert tokens["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["tokens"][
        "dtype"] == "DT_INT32"


def test_row_format_single_input_single_output(client, model_repo):
    x = np.random.default_rng(0).random((3, 4)).round(4).astype(np.float32)
    status, body = post(client, "/v1/models/dense:predict", {"instances": x.tolist()})
    assert status == 200 and set(body) == {"predictions"}
    np.testing.assert_allclose(body["predictions"], reference(model_repo / "dense.keras", x), atol=1e-5)
    status, named = post(client, "/v1/models/dense/versions/1:predict",
                         {"signature_name": "serving_default", "instances": [{"features": row} for row in x.tolist()]})
    assert status == 200 and named["predictions"] == body["predictions"]


def test_columnar_format_and_two_inputs(client, model_repo):
    rng = np.random.default_rng(1)
    a, b = rng.random((2, 4)).astype(np.float32), rng.random((2, 3)).astype(np.float32)
    expected = np.asarray(reference(model_repo / "two_inputs.keras", {"a": a, "b": b}))
    status, body = post(client, "/v1/models/two_inputs:predict", {"inputs": {"a": a.tolist(), "b": b.tolist()}})
    assert status == 200 and set(body) == {"outputs"}
    np.testing.assert_allclose(body["outputs"], expected, atol=1e-5)
    status, rows = post(client, "/v1/models/two_inputs:predict",
                        {"instances": [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(2)]})
    assert status == 200
    np.testing.assert_allclose(rows["predictions"], expected, atol=1e-5)


def test_several_outputs_rows_are_objects_and_columns_an_object(client, model_repo):
    x = np.random.default_rng(2).random((2, 6)).astype(np.float32)
    expected = reference(model_repo / "two_outputs.keras", x)
    status, rows = post(client, "/v1/models/two_outputs:predict", {"instances": x.tolist()})
    assert status == 200 and all(set(row) == {"label", "score"} for row in rows["predictions"])
    status, cols = post(client, "/v1/models/two_outputs:predict", {"inputs": x.tolist()})
    assert status == 200 and set(cols["outputs"]) == {"label", "score"}
    for name in ("label", "score"):
        np.testing.assert_allclose([row[name] for row in rows["predictions"]], expected[name], atol=1e-5)
        np.testing.assert_allclose(cols["outputs"][name], expected[name], atol=1e-5)


def test_int_inputs(client, model_repo):
    ids = np.random.default_rng(3).integers(0, 20, (2, 10)).astype(np.int32)
    status, body = post(client, "/v1/models/tokens:predict", {"instances": ids.tolist()})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], reference(model_repo / "tokens.keras", ids), atol=1e-5)


@pytest.mark.parametrize(("url", "payload", "status", "word"), [
    ("/v1/models/half:predict", {"instances": [[1.0, 2.0, 3.0, 4.0]]}, 404, "half"),
    ("/v1/models/dense/versions/9:predict", {"instances": [[1.0, 2.0, 3.0, 4.0]]}, 404, "9"),
    ("/v1/models/corrupt:predict", {"instances": [[1.0]]}, 503, "corrupt"),
    ("/v1/models/dense:predict", {"instances": [[1.0, 2.0, 3.0]]}, 400, "shape"),
    ("/v1/models/dense:predict", {"instances": [[1.0, 2.0, 3.0, 4.0]], "inputs": [[1.0, 2.0, 3.0, 4.0]]}, 400,
     "instances"),
    ("/v1/models/dense:predict", {"signature_name": "classify", "instances": [[1, 2, 3, 4]]}, 400, "classify"),
    ("/v1/models/dense:predict", {"instances": [["a", "b", "c", "d"]]}, 400, "strings"),
    ("/v1/models/dense:predict", {"instances": [[1, 2, 3, 4]] * 501}, 400, "501"),
    ("/v1/models/two_inputs:predict", {"instances": [{"a": [1, 2, 3, 4]}]}, 400, "b"),
])
def test_errors_are_tf_serving_shaped(client, url, payload, status, word):
    got, body = post(client, url, payload)
    assert got == status and set(body) == {"error"} and word in body["error"], body


def test_unknown_model_status_and_malformed_json(client):
    response = client.get("/v1/models/nope")
    assert response.status_code == 404 and set(response.get_json()) == {"error"}
    response = client.post("/v1/models/dense:predict", data=b'{"instances": [1.0,')
    assert response.status_code == 400 and "error" in response.get_json()
    assert client.get("/v1/models/dense/versions/7").status_code == 404


def test_predict_answers_name_the_version_in_a_header_as_the_body_names_none(client):
    latest = client.post("/v1/models/versioned:predict", data=b'{"instances": [[1, 2, 3, 4]]}')
    first = client.post("/v1/models/versioned/versions/1:predict", data=b'{"inputs": [[1, 2, 3, 4]]}')
    assert (latest.headers["X-Model-Version"], first.headers["X-Model-Version"]) == ("2", "1")
    assert set(latest.get_json()) == {"predictions"}


def test_label_routes_of_a_model_without_labels_are_404(client):
    for answer in (client.get("/v1/models/versioned/labels/stable"),
                   client.get("/v1/models/versioned/labels/stable/metadata"),
                   client.post("/v1/models/versioned/labels/stable:predict", data=b'{"instances": [[1, 2, 3, 4]]}')):
        assert answer.status_code == 404 and answer.get_json() == {
            "error": "model 'versioned' has no label 'stable'"}
