"""The V2 model repository extension: index, load (with Triton's config parameter) and unload, in-process.

The app carries calls out through its LocalControl (app.serving.control); tests/e2e covers gunicorn's workers.
A module folder: `alpha` (versions 1 and 2), `beta.keras`, and `broken` (a corrupt file).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app import create_app
from tests.api.test_openapi import conforms
from tests.conftest import MANAGEMENT_TOKEN
from tests.model_builders import corrupt, dense, reference

ROWS = np.random.default_rng(5).random((2, 4)).astype(np.float32)
UNLOADED = "unloaded through the model control API"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    dense(root / "alpha" / "1" / "model.keras", seed=31)
    dense(root / "alpha" / "2" / "model.keras", seed=32)
    dense(root / "beta.keras", seed=33)
    corrupt(root / "broken.h5")
    return root


@pytest.fixture(scope="module")
def app(folder: Path):
    application = create_app({"TESTING": True, "MODEL_DIR": folder, "STRICT_READINESS": False,
                              "API_TOKENS": MANAGEMENT_TOKEN})
    assert application.extensions["registry"].wait_until_settled(120)
    yield application
    application.extensions["registry"].close()


@pytest.fixture
def control(client, management_headers):
    """POST to a repository route with the management token."""
    def call(path: str, body: dict | None = None):
        return client.post(f"/v2/repository{path}", json=body, headers=management_headers)
    yield call
    assert call("/models/alpha/load").status_code == 200  # the next test starts from the folder's settings


def predict(client, **envelope):
    return client.post("/predict", json={"model": "alpha", "instances": ROWS.tolist(), **envelope})


def index(control) -> dict[tuple[str, str], dict]:
    return {(row["name"], row["version"]): row for row in control("/index").json}


def test_v2_advertises_the_model_repository_extension(client):
    assert "model_repository" in client.get("/v2").json["extensions"]


@pytest.mark.parametrize("path", ["/index", "/models/alpha/load", "/models/alpha/unload"])
def test_every_repository_route_needs_the_management_token(client, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = client.post(f"/v2/repository{path}", headers=headers)
        assert answer.status_code == 401 and set(answer.json) == {"error"}
    assert predict(client).status_code == 200  # nothing was unloaded


def test_management_is_disabled_without_a_configured_token(folder):
    application = create_app({"TESTING": True, "MODEL_DIR": folder})
    try:
        for path in ("/index", "/models/alpha/load", "/models/alpha/unload"):
            answer = application.test_client().post(f"/v2/repository{path}",
                                                    headers={"Authorization": f"Bearer {MANAGEMENT_TOKEN}"})
            assert answer.status_code == 403 and "management_disabled" in answer.json["error"]
    finally:
        application.extensions["registry"].close()


def test_unload_ends_every_version_on_every_status_surface_and_load_brings_it_back(client, control, folder):
    assert control("/models/alpha/unload").status_code == 200 and control("/models/alpha/unload").json == {}
    refused = predict(client)
    assert refused.status_code == 503 and refused.json["error"]["code"] == "model_not_available"
    rows = index(control)
    assert [rows[("alpha", v)]["state"] for v in "12"] == ["UNAVAILABLE", "UNAVAILABLE"]
    assert rows[("alpha", "1")]["reason"] == UNLOADED and rows[("beta", "1")]["state"] == "READY"
    assert ("alpha", "1") not in {(r["name"], r["version"]) for r in control("/index", {"ready": True}).json}
    status = client.get("/v1/models/alpha").json["model_version_status"]
    assert [(s["state"], s["status"]["error_message"]) for s in status] == [("END", UNLOADED)] * 2
    listed = {m["name"]: m["versions"] for m in client.get("/models").json["models"]}
    assert listed["alpha"] == [{"version": v, "state": "END", "error": UNLOADED} for v in (1, 2)]
    assert client.get("/v2/models/alpha/ready").status_code == 400
    assert predict(client, model="beta").status_code == 200  # other models serve on

    loaded = control("/models/alpha/load")
    assert loaded.status_code == 200 and loaded.json == {}
    answer = predict(client)
    assert answer.status_code == 200 and answer.json["version"] == 2
    np.testing.assert_allclose(answer.json["predictions"],
                               np.asarray(reference(folder / "alpha" / "2" / "model.keras", ROWS)), atol=1e-5)
    assert index(control)[("alpha", "1")] == {"name": "alpha", "version": "1", "state": "READY", "reason": ""}


def test_answers_about_an_unloaded_model_conform_to_the_document(client, control):
    document = client.get("/openapi.json").json
    assert control("/models/alpha/unload").status_code == 200
    for path, asked in (("/models", "/models"), ("/models/{name}", "/models/alpha"),
                        ("/models/{name}/versions/{version}", "/models/alpha/versions/1"),
                        ("/v1/models/{name}", "/v1/models/alpha"),
                        ("/v2/models/{name}/ready", "/v2/models/alpha/ready"),
                        ("/v1/models/{name}/metadata", "/v1/models/alpha/metadata"),
                        ("/health/ready", "/health/ready")):
        conforms(document, path, "get", client.get(asked))
    conforms(document, "/predict", "post", predict(client))
    conforms(document, "/v2/repository/index", "post", control("/index"))
    conforms(document, "/v2/repository/models/{name}/unload", "post", control("/models/alpha/unload"))


def test_load_with_a_config_replaces_serving_json_until_the_next_load(client, control):
    config = {"labels": {"canary": 2}, "default_version": 1}
    answer = control("/models/alpha/load", {"parameters": {"config": json.dumps(config)}})
    assert answer.status_code == 200 and answer.json == {}
    assert predict(client).json["version"] == 1
    canary = client.post("/v1/models/alpha/labels/canary:predict", json={"instances": ROWS.tolist()})
    assert canary.status_code == 200 and canary.headers["X-Model-Version"] == "2"
    assert control("/models/alpha/load").status_code == 200  # the folder's settings again: no label
    assert predict(client, label="canary").json["error"]["code"] == "label_not_found"
    assert predict(client).json["version"] == 2


def test_a_config_policy_ends_the_other_versions_and_a_label_on_them_is_503(client, control):
    config = {"version_policy": {"specific": {"versions": [1]}}, "labels": {"stable": 1, "canary": 2}}
    assert control("/models/alpha/load", {"parameters": {"config": json.dumps(config)}}).status_code == 200
    ended = index(control)[("alpha", "2")]
    assert ended["state"] == "UNAVAILABLE" and "version policy" in ended["reason"]
    canary = client.post("/v1/models/alpha/labels/canary:predict", json={"instances": ROWS.tolist()})
    assert canary.status_code == 503 and "'canary'" in canary.json["error"] and "version 2" in canary.json["error"]
    assert client.get("/v1/models/alpha/labels/canary").json["model_version_status"][0]["state"] == "END"
    assert predict(client, label="stable").json["version"] == 1


@pytest.mark.parametrize(("body", "words"), [
    ({"parameters": {"config": "{not json"}}, "not JSON"),
    ({"parameters": {"config": "[1]"}}, "JSON object"),
    ({"parameters": {"config": {"labels": {}}}}, "must be a string"),
    ({"parameters": {"config": json.dumps({"labels": {"stable": 0}})}}, "labels.stable"),
    ({"parameters": {"file:1/model.keras": "AAAA"}}, "unsupported parameter"),
    ({"parameters": []}, "must be an object"),
    ({"model": "alpha"}, "unknown field"),
])
def test_a_bad_load_body_is_400_and_changes_nothing(client, control, body, words):
    answer = control("/models/alpha/load", body)
    assert answer.status_code == 400 and words in answer.json["error"], answer.json
    assert predict(client).json["version"] == 2


def test_unload_accepts_tritons_parameters_and_refuses_others(control):
    assert control("/models/beta/unload", {"parameters": {"unload_dependents": False}}).status_code == 200
    assert control("/models/beta/load").status_code == 200
    refused = control("/models/beta/unload", {"parameters": {"unload_dependents": "yes"}})
    assert refused.status_code == 400 and "boolean" in refused.json["error"]


@pytest.mark.parametrize("action", ["load", "unload"])
def test_an_unknown_model_is_404_in_the_v2_error_shape(control, action):
    answer = control(f"/models/nothing/{action}")
    assert answer.status_code == 404 and set(answer.json) == {"error"} and "nothing" in answer.json["error"]


def test_a_load_that_fails_is_400_naming_the_worker_version_and_reason(control):
    answer = control("/models/broken/load")
    assert answer.status_code == 400, answer.json
    message = answer.json["error"]
    assert "'broken'" in message and "version 1" in message and "worker" in message
    assert index(control)[("broken", "1")]["state"] == "UNAVAILABLE"
