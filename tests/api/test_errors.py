"""Every bad request answers a JSON error with a stable code and the right status."""
from __future__ import annotations

import pytest

ROW = [1.0, 2.0, 3.0, 4.0]


def _post(client, body, content_type="application/json", **headers):
    return client.post("/predict", data=body, content_type=content_type, headers=headers)


@pytest.mark.parametrize("body,status,code", [
    ("not json", 400, "invalid_json"),
    ('{"model": "dense", "instances": [[1,2,3,4]]', 400, "invalid_json"),
    ("[1, 2]", 400, "invalid_request"),
    ('{"model": "dense"}', 400, "invalid_request"),
    ('{"model": "dense", "instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}', 400, "invalid_request"),
    ('{"model": "dense", "instances": [[1,2,3,4]], "extra": 1}', 400, "invalid_request"),
    ('{"model": "dense", "version": "1", "instances": [[1,2,3,4]]}', 400, "invalid_request"),
    ('{"model": "dense", "version": 0, "instances": [[1,2,3,4]]}', 400, "invalid_request"),
    ('{"model": "dense", "instances": {"features": 1}}', 400, "invalid_request"),
    ('{"model": "dense", "instances": []}', 400, "empty_batch"),
    ('{"model": "dense", "inputs": []}', 400, "empty_batch"),
    ('{"model": "dense", "instances": [[1,2,3,4],[1,2,3]]}', 400, "ragged_tensor"),
    ('{"model": "dense", "instances": [[1,2,3,"4"]]}', 400, "non_numeric_value"),
    ('{"model": "dense", "instances": [[1,2,3,true]]}', 400, "non_numeric_value"),
    ('{"model": "dense", "instances": [[true,false,true,false]]}', 400, "non_numeric_value"),
    ('{"model": "dense", "instances": [[1,2,3,null]]}', 400, "non_numeric_value"),
    ('{"model": "dense", "instances": [[1,2,3,NaN]]}', 400, "non_finite_value"),
    ('{"model": "dense", "instances": [[1,2,3,Infinity]]}', 400, "non_finite_value"),
    ('{"model": "dense", "instances": [[1,2,3,-Infinity]]}', 400, "non_finite_value"),
    ('{"model": "dense", "instances": [[1,2,3,1e999]]}', 400, "invalid_number"),
    ('{"model": "dense", "instances": [[1,2,3,01]]}', 400, "invalid_number"),
    ('{"model": "dense", "instances": [[1,2,3,4]], "model": "dense"}', 400, "invalid_request"),
    ('{"model": "dense", "instances": [[1,2],[3,[4]]]}', 400, "ragged_tensor"),
    ('{"model": "nope", "instances": [[1,2,3,4],[1]]}', 404, "model_not_found"),
    ('{"model": "dense", "instances": 5}', 400, "invalid_request"),
    ('{"model": "dense", "inputs": 5}', 400, "invalid_tensor"),
    ('{"model": "nope", "instances": [[1,2,3,4]]}', 404, "model_not_found"),
    ('{"model": "dense", "version": 7, "instances": [[1,2,3,4]]}', 404, "version_not_found"),
    ('{"model": "corrupt", "instances": [[1,2,3,4]]}', 503, "model_not_available"),
    ('{"model": "dense", "instances": [[1,2,3]]}', 422, "shape_mismatch"),
    ('{"model": "dense", "instances": [[[1,2,3,4]]]}', 422, "shape_mismatch"),
    ('{"model": "dense", "inputs": {"nope": [[1,2,3,4]]}}', 422, "unknown_input"),
    ('{"model": "two_inputs", "inputs": {"a": [[1,2,3,4]]}}', 422, "missing_input"),
    ('{"model": "two_inputs", "instances": [[1,2,3,4]]}', 422, "missing_input"),
    ('{"model": "two_inputs", "instances": [{"a": [1,2,3,4], "b": [1,2,3], "c": 1}]}', 422, "unknown_input"),
    ('{"model": "two_inputs", "inputs": {"a": [[1,2,3,4]], "b": [[1,2,3],[1,2,3]]}}', 422, "batch_size_mismatch"),
    ('{"model": "tokens", "instances": [[0.5,1,2,3,4,5,6,7,8,9]]}', 422, "dtype_mismatch"),
    ('{"model": "tokens", "instances": [[1e12,1,2,3,4,5,6,7,8,9]]}', 422, "dtype_mismatch"),
    ('{"model": "dense", "instances": [[1,2,3,1e39]]}', 422, "dtype_mismatch"),  # inf as float32
    ('{"model": "dense", "instances": [[1.5,2,3,-1e39]]}', 422, "dtype_mismatch"),  # ... on the fast path
])
def test_bad_predict_requests_answer_their_code(client, body, status, code):
    response = _post(client, body)
    assert response.status_code == status, response.json
    error = response.json["error"]
    assert error["code"] == code
    assert error["message"] and isinstance(error["details"], dict)


def test_shape_errors_name_the_input_and_both_shapes(client):
    error = _post(client, '{"model": "dense", "instances": [[1,2,3]]}').json["error"]
    assert error["details"] == {"input": "features", "expected": [None, 4], "received": [1, 3]}


def test_wrong_content_type_is_415(client):
    response = _post(client, '{"model": "dense", "instances": [[1,2,3,4]]}', content_type="text/plain")
    assert response.status_code == 415
    assert response.json["error"]["code"] == "unsupported_media_type"


def test_too_many_rows_is_413(client):
    response = client.post("/predict", json={"model": "dense", "instances": [ROW] * 501})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_many_rows"


def test_body_over_the_limit_is_rejected_from_content_length(app, client):
    limit = app.extensions["settings"].max_content_length
    response = client.post("/predict", data=b" " * (limit + 1), content_type="application/json")
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"


def test_routing_errors_use_the_same_shape(client):
    response = client.get("/no/such/route")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    response = client.get("/predict")
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"


def test_a_bad_request_does_not_affect_the_next_good_one(client):
    assert _post(client, '{"model": "dense", "instances": [[1,2,3]]}').status_code == 422
    assert _post(client, "garbage").status_code == 400
    assert client.post("/predict", json={"model": "dense", "instances": [ROW]}).status_code == 200


def test_an_unexpected_bug_is_a_500_without_traceback(app, client, monkeypatch):
    from app.serving import tensors

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(tensors, "conform", explode)
    monkeypatch.setattr("app.api.dataplane.conform", explode)
    response = client.post("/predict", json={"model": "dense", "instances": [ROW]})
    assert response.status_code == 500
    error = response.json["error"]
    assert error["code"] == "internal_error" and "secret" not in response.get_data(as_text=True)
    assert error["details"]["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize("path,allowed", [("/predict", ["OPTIONS", "POST"]), ("/health", ["GET", "HEAD", "OPTIONS"]),
                                          ("/v2/models/dense/infer", ["OPTIONS", "POST"])])
def test_options_answers_the_allowed_methods_as_json(client, path, allowed):
    response = client.options(path)
    assert response.status_code == 200 and response.is_json
    assert response.json == {"allow": allowed} and response.headers["Allow"] == ", ".join(allowed)


def test_options_on_an_unknown_route_is_our_json_404(client):
    response = client.options("/nowhere")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
