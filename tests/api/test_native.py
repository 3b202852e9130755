"""POST /predict, GET /models, GET /health through the Flask test client, against real Keras models."""
from __future__ import annotations

import numpy as np
import pytest

from tests.model_builders import reference

ATOL = 1e-5


def test_predict_rows_match_keras_in_process(client, model_repo):
    rows = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    response = client.post("/predict", json={"model": "dense", "instances": rows.tolist()})
    assert response.status_code == 200
    body = response.json
    assert (body["model"], body["version"]) == ("dense", 1)
    expected = np.asarray(reference(model_repo / "dense.keras", rows))
    np.testing.assert_allclose(body["predictions"], expected, atol=ATOL)


def test_predict_columns_answer_outputs(client, model_repo):
    rows = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    body = client.post("/predict", json={"model": "dense", "inputs": rows.tolist()}).json
    np.testing.assert_allclose(body["outputs"], np.asarray(reference(model_repo / "dense.keras", rows)), atol=ATOL)
    named = client.post("/predict", json={"model": "dense", "inputs": {"features": rows.tolist()}}).json
    assert named["outputs"] == body["outputs"]


def test_two_named_inputs_in_rows_and_columns(client, model_repo):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 4)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    expected = np.asarray(reference(model_repo / "two_inputs.keras", {"a": a, "b": b}))
    rows = [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(4)]
    by_rows = client.post("/predict", json={"model": "two_inputs", "instances": rows}).json
    np.testing.assert_allclose(by_rows["predictions"], expected, atol=ATOL)
    by_cols = client.post("/predict", json={"model": "two_inputs", "inputs": {"a": a.tolist(), "b": b.tolist()}}).json
    np.testing.assert_allclose(by_cols["outputs"], expected, atol=ATOL)


def test_two_named_outputs_keyed_by_output_name(client, model_repo):
    x = np.random.default_rng(3).normal(size=(2, 6)).astype("float32")
    expected = reference(model_repo / "two_outputs.keras", x)
    rows = client.post("/predict", json={"model": "two_outputs", "instances": x.tolist()}).json["predictions"]
    assert set(rows[0]) == {"label", "score"}
    np.testing.assert_allclose([r["label"] for r in rows], np.asarray(expected["label"]), atol=ATOL)
    cols = client.post("/predict", json={"model": "two_outputs", "inputs": x.tolist()}).json["outputs"]
    np.testing.assert_allclose(cols["score"], np.asarray(expected["score"]), atol=ATOL)


def test_cnn_and_int_token_lstm(client, model_repo):
    images = np.random.default_rng(4).random((2, 28, 28, 1)).astype("float32")
    body = client.post("/predict", json={"model": "cnn", "instances": images.tolist()}).json
    np.testing.assert_allclose(body["predictions"], np.asarray(reference(model_repo / "cnn.keras", images)), atol=ATOL)
    tokens = np.random.default_rng(5).integers(0, 20, size=(3, 10)).astype("int32")
    body = client.post("/predict", json={"model": "tokens", "instances": tokens.tolist()}).json
    expected = np.asarray(reference(model_repo / "tokens.keras", tokens))
    np.testing.assert_allclose(body["predictions"], expected, atol=ATOL)


def test_file_saved_by_tf_keras_serves(client, model_repo):
    import tf_keras

    x = np.random.default_rng(6).normal(size=(3, 5)).astype("float32")
    expected = tf_keras.models.load_model(model_repo / "legacy.h5", compile=False)(x).numpy()
    body = client.post("/predict", json={"model": "legacy", "instances": x.tolist()}).json
    np.testing.assert_allclose(body["predictions"], expected, atol=ATOL)


def test_version_defaults_to_highest_and_can_be_chosen(client, model_repo):
    x = [[0.1, 0.2, 0.3, 0.4]]
    latest = client.post("/predict", json={"model": "versioned", "instances": x}).json
    first = client.post("/predict", json={"model": "versioned", "version": 1, "instances": x}).json
    assert (latest["version"], first["version"]) == (2, 1)
    v1 = np.asarray(reference(model_repo / "versioned" / "1" / "model.keras", np.array(x, "float32")))
    np.testing.assert_allclose(first["predictions"], v1, atol=ATOL)
    assert not np.allclose(latest["predictions"], first["predictions"])


def test_every_answer_names_its_version_in_the_x_model_version_header(client):
    x = [[0.1, 0.2, 0.3, 0.4]]
    latest = client.post("/predict", json={"model": "versioned", "inputs": x})
    first = client.post("/predict", json={"model": "versioned", "version": 1, "instances": x})
    assert (latest.headers["X-Model-Version"], first.headers["X-Model-Version"]) == ("2", "1")
    refused = client.post("/predict", json={"model": "versioned", "version": 3, "instances": x})
    assert refused.status_code == 404 and "X-Model-Version" not in refused.headers


def test_a_model_without_labels_answers_label_not_found(client):
    answer = client.post("/predict", json={"model": "versioned", "label": "stable", "instances": [[0.1] * 4]})
    assert answer.status_code == 404 and answer.json["error"]["code"] == "label_not_found"
    assert answer.json["error"]["details"] == {"model": "versioned", "label": "stable", "labels": []}


def test_requests_larger_than_max_batch_size_are_split_and_kept_in_order(client, model_repo):
    rows = np.random.default_rng(7).normal(size=(50, 4)).astype("float32")  # MAX_BATCH_SIZE is 16 here
    body = client.post("/predict", json={"model": "dense", "instances": rows.tolist()}).json
    np.testing.assert_allclose(body["predictions"], np.asarray(reference(model_repo / "dense.keras", rows)), atol=ATOL)


def test_models_lists_every_version_with_state_and_failure_reason(client):
    models = {m["name"]: m for m in client.get("/models").json["models"]}
    assert {"dense", "two_inputs", "versioned", "corrupt", "legacy"} <= set(models)
    assert [v["version"] for v in models["versioned"]["versions"]] == [1, 2]
    (corrupt,) = models["corrupt"]["versions"]
    assert corrupt["state"] == "FAILED" and corrupt["error"]


def test_model_detail_shows_signature_source_format_and_load_time(client):
    body = client.get("/models/two_inputs").json
    (version,) = body["versions"]
    assert version["state"] == "AVAILABLE"
    assert {i["name"] for i in version["inputs"]} == {"a", "b"}
    assert version["outputs"][0]["shape"] == [None, 2]
    assert version["inputs"][0]["dtype"] == "float32"
    assert version["source"].endswith("two_inputs.keras")
    assert version["format"] == "keras_zip" and version["load_seconds"] >= 0
    one = client.get("/models/versioned/versions/2").json
    assert one["version"] == 2 and one["name"] == "versioned"


def test_unknown_model_and_version_in_metadata_routes_are_404(client):
    assert client.get("/models/nope").json["error"]["code"] == "model_not_found"
    response = client.get("/models/dense/versions/9")
    assert response.status_code == 404 and response.json["error"]["code"] == "version_not_found"


def test_health_is_live(client):
    response = client.get("/health")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_readiness_ignores_failed_versions_when_not_strict(client):
    assert client.get("/health/ready").status_code == 200


def test_request_id_is_echoed_or_created(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == "abc-1"
    assert len(client.get("/health").headers["X-Request-ID"]) == 32


@pytest.mark.parametrize("model", ["dense", None])
def test_model_may_be_omitted_only_when_unambiguous(client, model):
    payload = {"instances": [[1, 2, 3, 4]], **({"model": model} if model else {})}
    response = client.post("/predict", json=payload)
    if model:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert response.json["error"]["code"] == "invalid_request"
        assert "dense" in response.json["error"]["details"]["models"]


def test_model_detail_reports_the_effective_per_model_settings(tmp_path, model_repo):
    from app import create_app

    (tmp_path / "dense.keras").symlink_to(model_repo / "dense.keras")
    (tmp_path / "dense.serving.json").write_text('{"max_batch_size": 4, "request_timeout": 2.5}')
    application = create_app({"MODEL_DIR": tmp_path, "MAX_QUEUE_ROWS": 99})
    assert application.extensions["registry"].wait_until_settled(60)
    (version,) = application.test_client().get("/models/dense").json["versions"]
    assert version["batching"] == {"max_batch_size": 4, "max_batch_delay_ms": 2.0, "max_queue_rows": 99,
                                   "request_timeout": 2.5}
    assert version["settings_file"].endswith("dense.serving.json") and version["custom_objects"] is None
    application.extensions["registry"].close()


def test_model_detail_reports_the_runtime_and_whether_calls_are_shared(tmp_path, model_repo):
    from app import create_app

    for name in ("dense", "tokens"):
        (tmp_path / f"{name}.keras").symlink_to(model_repo / f"{name}.keras")
    (tmp_path / "tokens.serving.json").write_text('{"runtime": "tf"}')
    application = create_app({"MODEL_DIR": tmp_path})
    assert application.extensions["registry"].wait_until_settled(60)
    client = application.test_client()
    dense = client.get("/models/dense").json["versions"][0]["runtime"]
    tokens = client.get("/models/tokens").json["versions"][0]["runtime"]
    application.extensions["registry"].close()
    assert dense["kind"] == "tflite" and dense["not_tflite_because"] is None
    assert tokens["kind"] == "tf_function" and tokens["not_tflite_because"] == "the runtime setting asks for tf"
    assert set(dense["call_us"]) == {"1", "8"} and isinstance(dense["shares_calls"], bool)
    assert tokens["shares_calls"] is True  # an LSTM call costs far more than a hand-off to the batcher
