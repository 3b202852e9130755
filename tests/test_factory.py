"""The application factory: config layering, registry in app.extensions, blueprints."""
from __future__ import annotations

import pytest

from app import create_app
from app.errors import ConfigError


def test_factory_takes_test_config(tmp_path):
    app = create_app({"TESTING": True, "MODEL_DIR": tmp_path})
    assert app.testing
    assert app.extensions["settings"].model_dir == tmp_path
    assert "MODEL_DIR" not in app.config  # our settings live in one typed object, Flask's keys in app.config


def test_a_setting_in_test_config_overrides_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SERVING_MAX_REQUEST_ROWS", "7")
    assert create_app({"MODEL_DIR": tmp_path, "MAX_REQUEST_ROWS": 9}).extensions["dataplane"].max_request_rows == 9
    assert create_app({"MODEL_DIR": tmp_path}).extensions["dataplane"].max_request_rows == 7


def test_registry_lives_in_app_extensions(tmp_path):
    app = create_app({"MODEL_DIR": tmp_path})
    registry = app.extensions["registry"]
    assert registry.wait_until_settled(10)
    assert registry.names() == []


def test_invalid_environment_stops_the_factory(monkeypatch, tmp_path):
    monkeypatch.setenv("SERVING_MAX_REQUEST_ROWS", "zero")
    with pytest.raises(ConfigError, match="SERVING_MAX_REQUEST_ROWS"):
        create_app({"MODEL_DIR": tmp_path})


def test_empty_model_folder_is_not_ready_saying_so_and_predict_names_no_model(tmp_path):
    app = create_app({"MODEL_DIR": tmp_path})
    app.extensions["registry"].wait_until_settled(10)
    client = app.test_client()
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and "SERVING_MODEL_DIR holds no model" in ready.json["reason"]
    response = client.post("/predict", json={"model": "x", "instances": [[1]]})
    assert response.status_code == 404
    assert response.json["error"]["code"] == "model_not_found"
