"""Labels (serving.json `labels`) on every surface, and the X-Model-Version header on every inference answer.

One model folder with three versions: 1 and 2 real Keras models, 3 a corrupt file (FAILED); labels name
versions 1, 2, 3 and 9 (a version the folder does not hold); `default_version` is 1.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from app import create_app
from tests.conftest import MANAGEMENT_TOKEN
from tests.model_builders import corrupt, dense, reference

ROWS = np.random.default_rng(3).random((2, 4)).astype(np.float32)
LABELS = {"stable": 1, "canary": 2, "broken": 3, "ghost": 9}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    dense(root / "labelled" / "1" / "model.keras", seed=21)
    dense(root / "labelled" / "2" / "model.keras", seed=22)
    corrupt(root / "labelled" / "3" / "model.h5")
    (root / "labelled" / "serving.json").write_text(json.dumps({"labels": LABELS, "default_version": 1}))
    return root


@pytest.fixture(scope="module")
def app(folder: Path):
    application = create_app({"TESTING": True, "MODEL_DIR": folder, "STRICT_READINESS": False,
                              "API_TOKENS": MANAGEMENT_TOKEN})
    assert application.extensions["registry"].wait_until_settled(120)
    yield application
    application.extensions["registry"].close()


def expected(folder: Path, version: int) -> np.ndarray:
    return np.asarray(reference(folder / "labelled" / str(version) / "model.keras", ROWS))


def tf_post(client, url: str, payload: dict):
    return client.post(url, data=orjson.dumps(payload), content_type="application/json")


def test_native_predict_by_label_answers_that_version_in_body_and_header(client, folder):
    for label, version in (("stable", 1), ("canary", 2)):
        answer = client.post("/predict", json={"model": "labelled", "label": label, "instances": ROWS.tolist()})
        assert answer.status_code == 200, answer.json
        assert answer.json["version"] == version and answer.headers["X-Model-Version"] == str(version)
        np.testing.assert_allclose(answer.json["predictions"], expected(folder, version), atol=1e-5)
    default = client.post("/predict", json={"model": "labelled", "instances": ROWS.tolist()})
    assert default.json["version"] == 1 and default.headers["X-Model-Version"] == "1"  # default_version


def test_tf_serving_predict_by_label_names_the_version_in_the_header(client, folder):
    answer = tf_post(client, "/v1/models/labelled/labels/canary:predict", {"instances": ROWS.tolist()})
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "2"
    np.testing.assert_allclose(answer.json["predictions"], expected(folder, 2), atol=1e-5)
    by_version = tf_post(client, "/v1/models/labelled/versions/1:predict", {"inputs": ROWS.tolist()})
    assert by_version.headers["X-Model-Version"] == "1"
    np.testing.assert_allclose(by_version.json["outputs"], expected(folder, 1), atol=1e-5)


def test_tf_serving_label_status_and_metadata_are_the_labelled_versions(client):
    status = client.get("/v1/models/labelled/labels/canary")
    assert status.status_code == 200
    assert status.json == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    broken = client.get("/v1/models/labelled/labels/broken").json["model_version_status"]
    assert broken[0]["version"] == "3" and broken[0]["state"] == "END" and broken[0]["status"]["error_message"]
    ghost = client.get("/v1/models/labelled/labels/ghost").json["model_version_status"]
    assert ghost[0]["version"] == "9" and ghost[0]["state"] == "END" and "ghost" in ghost[0]["status"]["error_message"]
    metadata = client.get("/v1/models/labelled/labels/stable/metadata")
    assert metadata.status_code == 200 and metadata.json["model_spec"]["version"] == "1"


def test_an_unknown_label_is_404_label_not_found_on_every_route(client):
    native = client.post("/predict", json={"model": "labelled", "label": "nope", "instances": ROWS.tolist()})
    assert native.status_code == 404 and native.json["error"]["code"] == "label_not_found"
    assert native.json["error"]["details"]["labels"] == sorted(LABELS)
    for answer in (tf_post(client, "/v1/models/labelled/labels/nope:predict", {"instances": ROWS.tolist()}),
                   client.get("/v1/models/labelled/labels/nope"),
                   client.get("/v1/models/labelled/labels/nope/metadata"),
                   tf_post(client, "/v1/models/labelled/labels/nope:explain", {"instances": ROWS.tolist()})):
        assert answer.status_code == 404 and "'nope'" in answer.json["error"], answer.json
    unknown_model = client.get("/v1/models/nothing/labels/stable")
    assert unknown_model.status_code == 404 and "nothing" in unknown_model.json["error"]


@pytest.mark.parametrize(("label", "version"), [("broken", 3), ("ghost", 9)])
def test_a_label_on_a_version_not_available_is_503_naming_label_and_version(client, label, version):
    native = client.post("/predict", json={"model": "labelled", "label": label, "instances": ROWS.tolist()})
    assert native.status_code == 503 and native.json["error"]["code"] == "model_not_available"
    assert native.json["error"]["details"] | {"label": label, "version": version} == native.json["error"]["details"]
    tfs = tf_post(client, f"/v1/models/labelled/labels/{label}:predict", {"instances": ROWS.tolist()})
    assert tfs.status_code == 503 and repr(label) in tfs.json["error"] and f"version {version}" in tfs.json["error"]


def test_version_and_label_together_are_400(client):
    for route in ("/predict", "/explain"):
        answer = client.post(route, json={"model": "labelled", "version": 1, "label": "stable",
                                          "instances": ROWS.tolist()})
        assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_request", answer.json
        assert "not both" in answer.json["error"]["message"]
    bad = client.post("/predict", json={"model": "labelled", "label": "a b", "instances": ROWS.tolist()})
    assert bad.status_code == 400 and "label" in bad.json["error"]["details"]["fields"]


def test_explain_by_label_and_the_version_header(client):
    native = client.post("/explain", json={"model": "labelled", "label": "canary", "method": "saliency",
                                           "instances": ROWS.tolist()})
    assert native.status_code == 200, native.json
    assert native.json["version"] == 2 and native.headers["X-Model-Version"] == "2"
    tfs = tf_post(client, "/v1/models/labelled/labels/stable:explain",
                  {"instances": ROWS.tolist(), "parameters": {"method": "saliency"}})
    assert tfs.status_code == 200 and tfs.headers["X-Model-Version"] == "1" and "explanations" in tfs.json


def test_v2_infer_answers_name_the_version_in_a_header(client):
    tensor = {"name": "features", "shape": list(ROWS.shape), "datatype": "FP32", "data": ROWS.ravel().tolist()}
    answer = client.post("/v2/models/labelled/versions/2/infer", json={"inputs": [tensor]})
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "2"
    assert answer.json["model_version"] == "2"
    binary = client.post("/v2/models/labelled/infer", json={"inputs": [tensor],
                                                            "parameters": {"binary_data_output": True}})
    assert binary.mimetype == "application/octet-stream" and binary.headers["X-Model-Version"] == "1"
