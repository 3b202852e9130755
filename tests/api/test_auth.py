"""Bearer tokens: management routes always need one, inference and metadata with SERVING_REQUIRE_TOKEN, health never."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from app import create_app
from app.errors import ConfigError
from tests import model_builders as mb

TOKEN, OTHER = "s3cret-token-one", "s3cret-token-two"
ROW = [[1.0, 2.0, 3.0, 4.0]]
V2_INPUT = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ROW[0]}]}
MANAGEMENT = [("POST", "/v2/repository/index", None)]
# Every inference and metadata route of the three surfaces (SERVING_REQUIRE_TOKEN=true protects them).
PROTECTED = [
    ("POST", "/predict", {"model": "dense", "instances": ROW}),
    ("GET", "/models", None),
    ("GET", "/models/dense", None),
    ("GET", "/models/dense/versions/1", None),
    ("GET", "/v1/models/dense", None),
    ("GET", "/v1/models/dense/versions/1", None),
    ("GET", "/v1/models/dense/metadata", None),
    ("GET", "/v1/models/dense/versions/1/metadata", None),
    ("POST", "/v1/models/dense:predict", {"instances": ROW}),
    ("POST", "/v1/models/dense/versions/1:predict", {"instances": ROW}),
    ("GET", "/v2", None),
    ("GET", "/v2/models/dense", None),
    ("GET", "/v2/models/dense/versions/1", None),
    ("GET", "/v2/models/dense/config", None),
    ("GET", "/v2/models/dense/versions/1/config", None),
    ("POST", "/v2/models/dense/infer", V2_INPUT),
    ("POST", "/v2/models/dense/versions/1/infer", V2_INPUT),
] + MANAGEMENT
HEALTH = ["/health", "/health/ready", "/v2/health/live", "/v2/health/ready", "/v2/models/dense/ready",
          "/v2/models/dense/versions/1/ready"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("auth-models")
    mb.dense(folder / "dense.keras")
    return folder


@pytest.fixture(scope="module")
def make_app(model_dir):
    """Apps serving `model_dir` with the given settings, loaded; closed at the end of the module."""
    made = []

    def make(**settings):
        application = create_app({"TESTING": True, "MODEL_DIR": model_dir, **settings})
        made.append(application)
        application.test_client().get("/health")  # starts loading
        assert application.extensions["registry"].wait_until_settled(120)
        return application.test_client()

    yield make
    for application in made:
        application.extensions["registry"].close()


@pytest.fixture(scope="module")
def open_client(make_app):
    return make_app()


@pytest.fixture(scope="module")
def token_client(make_app):
    return make_app(API_TOKENS=f" {TOKEN} , {OTHER} ")


@pytest.fixture(scope="module")
def strict_client(make_app):
    return make_app(API_TOKENS=TOKEN, REQUIRE_TOKEN=True)


def call(client, method: str, path: str, body=None, token: str | None = None, scheme: str = "Bearer"):
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return client.open(path, method=method, json=body, headers=headers)


def error_text(response) -> str:
    """The error message in the surface's shape: native `{"error": {...}}`, /v1 and /v2 `{"error": "..."}`."""
    error = response.json["error"]
    if response.request.path.startswith(("/v1/", "/v2")):
        assert isinstance(error, str)
        return error
    assert set(error) == {"code", "message", "details"}
    return error["message"]


@pytest.mark.parametrize("path", ["/v2/repository/index", "/v2/repository/models/dense/load",
                                  "/v2/repository/models/dense/unload"])
def test_management_without_any_token_configured_is_403_management_disabled_naming_the_setting(open_client, path):
    response = call(open_client, "POST", path)
    assert response.status_code == 403
    assert "SERVING_API_TOKENS" in response.json["error"] and "management_disabled" in response.json["error"]
    assert call(open_client, "POST", path, token="anything").status_code == 403


def test_management_disabled_is_named_in_the_v2_error_body_whatever_the_slashes(open_client):
    for path in ("/v2/repository/index", "/v2//repository/index", "/v2/repository//models/dense/load"):
        response = open_client.post(environ_overrides={"PATH_INFO": path})
        assert response.status_code == 403, path
        assert response.json == {"error": "management_disabled: no token is configured; set SERVING_API_TOKENS or "
                                          "SERVING_API_TOKENS_FILE to enable the management endpoints"}


def test_without_tokens_inference_metadata_and_health_stay_open(open_client):
    for method, path, body in PROTECTED[:-1]:
        assert call(open_client, method, path, body).status_code == 200, path
    for path in HEALTH:
        assert call(open_client, "GET", path).status_code == 200, path


def test_management_needs_a_token_once_tokens_are_configured(token_client):
    missing = call(token_client, "POST", "/v2/repository/index")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer TOKEN" in error_text(missing)
    wrong = call(token_client, "POST", "/v2/repository/index", token="s3cret-token-on")
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert call(token_client, "POST", "/v2/repository/index", token=TOKEN).status_code == 200
    assert call(token_client, "POST", "/v2/repository/index", token=OTHER).status_code == 200
    assert call(token_client, "POST", "/v2/repository/index", token=TOKEN, scheme="bearer").status_code == 200
    assert call(token_client, "POST", "/v2/repository/index", token=TOKEN, scheme="Basic").status_code == 401


def test_without_require_token_inference_and_metadata_need_none(token_client):
    for method, path, body in PROTECTED[:-1]:
        assert call(token_client, method, path, body).status_code == 200, path


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_require_token_protects_every_inference_metadata_and_management_route(strict_client, method, path, body):
    missing = call(strict_client, method, path, body)
    assert missing.status_code == 401, missing.json
    assert missing.headers["WWW-Authenticate"].startswith("Bearer") and missing.headers["X-Request-ID"]
    assert "needs a token" in error_text(missing)
    wrong = call(strict_client, method, path, body, token=TOKEN + "x")
    assert wrong.status_code == 401 and "not valid" in error_text(wrong)
    assert call(strict_client, method, path, body, token=TOKEN).status_code == 200


@pytest.mark.parametrize("path", HEALTH)
def test_health_endpoints_never_need_a_token(strict_client, path):
    assert call(strict_client, "GET", path).status_code == 200


def test_unknown_routes_behind_require_token_answer_401_not_404(strict_client):
    assert call(strict_client, "GET", "/nowhere").status_code == 401
    assert call(strict_client, "GET", "/nowhere", token=TOKEN).status_code == 404


def test_metrics_needs_a_token_only_when_asked(make_app, strict_client):
    assert call(strict_client, "GET", "/metrics").status_code != 401  # open even with SERVING_REQUIRE_TOKEN
    guarded = make_app(API_TOKENS=TOKEN, METRICS_TOKEN_REQUIRED=True)
    assert call(guarded, "GET", "/metrics").status_code == 401
    assert call(guarded, "GET", "/metrics", token=TOKEN).status_code != 401
    assert call(guarded, "POST", "/predict", {"model": "dense", "instances": ROW}).status_code == 200


@pytest.mark.parametrize("setting", ["REQUIRE_TOKEN", "METRICS_TOKEN_REQUIRED"])
def test_requiring_a_token_with_none_configured_is_a_startup_error_naming_both(model_dir, setting):
    with pytest.raises(ConfigError, match=f"SERVING_{setting}=true needs a token: set SERVING_API_TOKENS or"):
        create_app({"MODEL_DIR": model_dir, setting: True})


def test_an_unreadable_tokens_file_is_a_startup_error_naming_the_variable(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="SERVING_API_TOKENS_FILE='.*missing' cannot be read"):
        create_app({"MODEL_DIR": model_dir, "API_TOKENS_FILE": tmp_path / "missing"})


def test_tokens_file_is_re_read_when_it_changes(make_app, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# rotated weekly\n\n  {TOKEN}  \n")
    client = make_app(API_TOKENS_FILE=tokens, REQUIRE_TOKEN=True)
    predict = ("POST", "/predict", {"model": "dense", "instances": ROW})
    assert call(client, *predict, token=TOKEN).status_code == 200
    assert call(client, *predict, token="# rotated weekly").status_code == 401  # comments are no tokens
    staged = tmp_path / "tokens.new"
    staged.write_text(f"{OTHER}\n")
    os.replace(staged, tokens)  # the atomic rotation a secret manager does
    assert call(client, *predict, token=TOKEN).status_code == 401
    assert call(client, *predict, token=OTHER).status_code == 200
    tokens.write_text(f"{OTHER[::-1]}\n")  # rewritten in place, same size
    assert call(client, *predict, token=OTHER).status_code == 401
    assert call(client, *predict, token=OTHER[::-1]).status_code == 200
    tokens.unlink()  # a missing file accepts none of its tokens
    assert call(client, *predict, token=OTHER[::-1]).status_code == 401
    tokens.write_text(f"{TOKEN}\n")
    assert call(client, *predict, token=TOKEN).status_code == 200


def test_fixed_and_file_tokens_are_both_accepted(make_app, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{OTHER}\n")
    client = make_app(API_TOKENS=TOKEN, API_TOKENS_FILE=tokens)
    for token in (TOKEN, OTHER):
        assert call(client, "POST", "/v2/repository/index", token=token).status_code == 200


def test_tokens_appear_in_no_log_line_nor_answer(token_client, caplog):
    caplog.set_level(logging.DEBUG)
    answers = [call(token_client, "POST", "/v2/repository/index", token=t).get_data(as_text=True)
               for t in (TOKEN, TOKEN + "x", "")]
    assert not any(TOKEN in text for text in [caplog.text, *answers])
    assert TOKEN not in repr(token_client.application.extensions["settings"])
