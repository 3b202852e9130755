"""POST /explain and /v1/models/NAME:explain: attributions against their definitions, every kind of input, refusals."""
from __future__ import annotations

import time

import numpy as np
import pytest

from app import create_app
from app.serving.types import BatchingSettings, ModelSource
from tests import model_builders as mb

WEIGHTS = np.array([[1.0, -2.0, 0.5], [0.5, 3.0, -1.0], [-1.0, 1.0, 2.0], [2.0, 0.0, -0.5]], np.float32)
BIAS = np.array([0.3, -0.1, 0.2], np.float32)
ROWS = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]]


def linear(path):
    """features (4) -> Dense(3), no activation, with WEIGHTS and BIAS."""
    x = mb.keras.Input((4,), name="features")
    model = mb.keras.Model(x, mb.keras.layers.Dense(3, name="scores")(x))
    model.get_layer("scores").set_weights([WEIGHTS, BIAS])
    return mb._save(model, path)


def mlp(path):
    """features (4) -> tanh -> tanh -> Dense(3) softmax: a model whose gradient varies along the path."""
    mb.keras.utils.set_random_seed(21)
    x = mb.keras.Input((4,), name="features")
    h = mb.keras.layers.Dense(16, activation="tanh")(x)
    h = mb.keras.layers.Dense(16, activation="tanh")(h)
    return mb._save(mb.keras.Model(x, mb.keras.layers.Dense(3, activation="softmax", name="probs")(h)), path)


def bucketed(path):
    """features (4) -> Discretization: integer bucket ids, an output with no gradient."""
    x = mb.keras.Input((4,), name="features")
    return mb._save(mb.keras.Model(x, mb.keras.layers.Discretization(bin_boundaries=[0.0, 1.0], name="bins")(x)),
                    path)


def tflite(path, keras_file):
    """The .tflite file of `keras_file` (served by LiteRT alone)."""
    from app.serving.loader import load_model_file
    from app.serving.runtime import CompiledModel, convert

    settings = BatchingSettings(8, 1.0, 64, 30.0)
    compiled = CompiledModel(load_model_file(ModelSource("m", 1, keras_file, settings)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(convert(compiled.concrete))
    return path


@pytest.fixture(scope="module")
def explain_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain_models")
    linear(root / "linear.keras")
    mlp(root / "mlp.keras")
    mb.two_inputs(root / "two_inputs.keras")
    mb.two_outputs(root / "two_outputs.keras")
    mb.tokens_lstm(root / "tokens.keras")
    mb.cnn(root / "cnn.keras")
    mb.int64_identity(root / "ids.keras")
    bucketed(root / "bucketed.keras")
    mb.tf_keras_h5(root / "legacy.h5")
    tflite(root / "lite" / "1" / "model.tflite", mb.dense(tmp_path_factory.mktemp("src") / "dense.keras"))
    application = create_app({"TESTING": True, "MODEL_DIR": root, "STRICT_READINESS": False,
                              "MAX_EXPLAIN_ROWS": 4, "MAX_EXPLAIN_STEPS": 128})
    assert application.extensions["registry"].wait_until_settled(120)
    yield application
    application.extensions["registry"].close()


@pytest.fixture
def post(explain_app):
    client = explain_app.test_client()
    return lambda body, path="/explain": client.post(path, json=body)


def attributions(answer, name="features"):
    return np.array([row["attributions"][name] for row in answer["explanations"]])


@pytest.mark.parametrize("method, expected", [
    ("integrated_gradients", np.array(ROWS) * WEIGHTS[:, 1]),
    ("gradient_x_input", np.array(ROWS) * WEIGHTS[:, 1]),
    ("saliency", np.abs(np.tile(WEIGHTS[:, 1], (2, 1)))),
])
def test_a_linear_model_s_attributions_are_its_definition_for_the_target(post, method, expected):
    answer = post({"model": "linear", "instances": ROWS, "method": method, "target": 1}).get_json()
    np.testing.assert_allclose(attributions(answer), expected, atol=1e-5)
    predictions = np.array(ROWS) @ WEIGHTS[:, 1] + BIAS[1]
    assert [row["target"] for row in answer["explanations"]] == [{"output": "scores", "index": 1}] * 2
    np.testing.assert_allclose([row["prediction"] for row in answer["explanations"]], predictions, atol=1e-5)
    assert answer["method"] == method and answer["model"] == "linear" and answer["version"] == 1


def test_integrated_gradients_of_a_linear_model_are_complete_and_argmax_is_the_default_target(post):
    answer = post({"model": "linear", "instances": ROWS}).get_json()
    scores = np.array(ROWS) @ WEIGHTS + BIAS
    assert [row["target"]["index"] for row in answer["explanations"]] == list(scores.argmax(axis=1))
    for row in answer["explanations"]:
        assert abs(row["completeness"]["delta"]) < 1e-5
        change = row["prediction"] - BIAS[row["target"]["index"]]  # f(0) is the bias
        assert row["completeness"]["prediction_minus_baseline"] == pytest.approx(change, abs=1e-5)
    assert answer["steps"] == 50


def test_a_nonlinear_mlp_is_complete_within_1_percent_at_64_steps_and_more_steps_shrink_the_gap(post):
    rows = [[2.0, -1.5, 0.7, 3.0], [-2.5, 1.0, 2.0, -1.0]]
    gaps = {}
    for steps in (1, 64):
        answer = post({"model": "mlp", "instances": rows, "steps": steps, "baseline": 0.1}).get_json()
        gaps[steps] = [abs(row["completeness"]["delta"]) for row in answer["explanations"]]
        if steps == 64:
            for row in answer["explanations"]:
                assert row["completeness"]["relative"] < 0.01
                total = sum(row["attributions"]["features"])
                assert total == pytest.approx(row["completeness"]["sum_of_attributions"], abs=1e-6)
    assert all(many < few for few, many in zip(gaps[1], gaps[64]))


def test_the_tfserving_surface_takes_options_under_parameters_and_answers_the_same(post):
    native = post({"model": "linear", "instances": ROWS, "method": "saliency", "target": 2}).get_json()
    v1 = post({"instances": ROWS, "parameters": {"method": "saliency", "target": 2}},
              "/v1/models/linear/versions/1:explain").get_json()
    assert v1["explanations"] == native["explanations"] and "model" not in v1
    assert post({"instances": ROWS}, "/v1/models/linear:explain").status_code == 200


def test_two_named_inputs_get_attributions_each_and_an_array_baseline_per_input(post):
    body = {"model": "two_inputs", "instances": [{"a": [1, 2, 3, 4], "b": [1, 0, -1]}], "target": 0,
            "baseline": {"a": [0.5, 0.5, 0.5, 0.5]}}
    row = post(body).get_json()["explanations"][0]
    assert len(row["attributions"]["a"]) == 4 and len(row["attributions"]["b"]) == 3
    assert abs(row["completeness"]["delta"]) < 1e-4


def test_a_target_names_one_of_two_outputs(post):
    body = {"model": "two_outputs", "instances": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]}
    answer = post({**body, "target": "label"}).get_json()
    assert answer["explanations"][0]["target"]["output"] == "label"
    answer = post({**body, "target": {"output": "score", "index": 0}}).get_json()
    assert answer["explanations"][0]["target"] == {"output": "score", "index": 0}
    refused = post({**body, "target": 1})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "invalid_target"


def test_token_inputs_are_attributed_over_the_embedding_and_summed_over_its_last_axis(post):
    answer = post({"model": "tokens", "instances": [[1, 5, 3, 0, 0, 2, 7, 9, 4, 1]], "target": 0}).get_json()
    row = answer["explanations"][0]
    assert len(row["attributions"]["tokens"]) == 10
    assert "Embedding" in answer["notes"]["tokens"] and "last axis" in answer["notes"]["tokens"]
    assert row["completeness"]["relative"] < 0.01


def test_a_model_loaded_by_tf_keras_is_explained_too(post):
    answer = post({"model": "legacy", "instances": [[0.5, -1.0, 2.0, 0.1, 1.5]], "steps": 64}).get_json()
    (row,) = answer["explanations"]
    assert row["completeness"]["relative"] < 0.01 and len(next(iter(row["attributions"].values()))) == 5


@pytest.mark.parametrize("change", [{"instances": [[1, 5, 3, 0, 0, 2, 7, 9, 4, 20]]}, {"baseline": -1}])
def test_token_ids_outside_the_embedding_s_vocabulary_answer_400(post, change):
    response = post({"model": "tokens", "instances": [[1] * 10], **change})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_tokens"


def test_a_cnn_answers_one_attribution_per_pixel(post):
    image = np.random.default_rng(0).random((1, 28, 28, 1)).tolist()
    answer = post({"model": "cnn", "instances": image, "method": "saliency"}).get_json()
    assert np.array(answer["explanations"][0]["attributions"]["image"]).shape == (28, 28, 1)


@pytest.mark.parametrize("model, why", [("lite", "LiteRT"), ("ids", "feeds no Embedding"),
                                         ("bucketed", "no gradient")])
def test_a_litert_only_version_or_a_model_without_gradients_is_refused_naming_why(post, model, why):
    response = post({"model": model, "instances": [[1, 2, 3, 4]]})
    error = response.get_json()["error"]
    assert response.status_code == 400 and error["code"] == "explain_unavailable"
    assert why in error["message"]
    v1 = post({"instances": [[1, 2, 3, 4]]}, f"/v1/models/{model}:explain")
    assert v1.status_code == 400 and "error" in v1.get_json()


@pytest.mark.parametrize("change, code", [
    ({"method": "shap"}, "invalid_method"),
    ({"target": 7}, "invalid_target"),
    ({"target": "nope"}, "invalid_target"),
    ({"baseline": [0, 0]}, "invalid_baseline"),
    ({"baseline": "ones"}, "invalid_baseline"),
    ({"baseline": 1e300}, "invalid_baseline"),
    ({"instances": [[1, 2, 3, 4]] * 5}, "too_many_rows"),
    ({"steps": 129}, "invalid_steps"),
    ({"steps": 0}, "invalid_steps"),
])
def test_invalid_options_and_too_many_rows_each_answer_a_json_400(post, change, code):
    response = post({"model": "linear", "instances": ROWS, **change})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == code
    parameters = {key: value for key, value in change.items() if key != "instances"}
    v1 = post({"instances": change.get("instances", ROWS), "parameters": parameters}, "/v1/models/linear:explain")
    assert v1.status_code == 400 and isinstance(v1.get_json()["error"], str)


def test_an_unknown_model_is_404_before_the_options_against_the_signature(post):
    assert post({"model": "nope", "instances": ROWS, "target": 99}).status_code == 404


def test_an_explanation_past_its_deadline_answers_504_and_frees_the_lane(tmp_path):
    mb.cnn(tmp_path / "cnn.keras")
    application = create_app({"TESTING": True, "MODEL_DIR": tmp_path, "EXPLAIN_TIMEOUT": 0.001,
                              "EXPLAIN_QUEUE": 0})
    try:
        assert application.extensions["registry"].wait_until_settled(120)
        client = application.test_client()
        body = {"model": "cnn", "instances": np.zeros((4, 28, 28, 1)).tolist(), "steps": 256}
        first = client.post("/explain", json=body)
        assert first.status_code == 504 and first.get_json()["error"]["code"] == "deadline_exceeded"
        statuses, waited = [], time.monotonic() + 60
        while 504 not in statuses and time.monotonic() < waited:  # 429 while the stopped work lets go of its slot
            statuses.append(client.post("/explain", json=body).status_code)
            time.sleep(0.05)
        assert statuses[-1] == 504 and set(statuses) <= {429, 504}
    finally:
        application.extensions["registry"].close()


@pytest.mark.parametrize("path, documented, body", [
    ("/explain", "/explain", {"model": "linear", "instances": ROWS}),
    ("/explain", "/explain", {"model": "tokens", "instances": [[1] * 10], "method": "saliency"}),
    ("/explain", "/explain", {"model": "lite", "instances": [[1, 2, 3, 4]]}),
    ("/v1/models/two_inputs/versions/1:explain", "/v1/models/{name}/versions/{version}:explain",
     {"instances": [{"a": [1, 2, 3, 4], "b": [1, 0, -1]}], "parameters": {"method": "gradient_x_input"}}),
    ("/v1/models/linear:explain", "/v1/models/{name}:explain", {"instances": ROWS, "parameters": {"steps": 0}}),
])
def test_explain_answers_conform_to_the_openapi_document(explain_app, post, path, documented, body):
    from openapi_schema_validator import OAS30Validator

    from app.api.openapi import build_document

    document = build_document(explain_app.url_map)
    answer = post(body, path)
    schema = document["paths"][documented]["post"]["responses"][str(answer.status_code)]["content"]
    OAS30Validator({**schema["application/json"]["schema"], "components": document["components"]}).validate(
        answer.get_json())
