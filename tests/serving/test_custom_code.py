"""Custom code runs only by opt-in (SERVING_ALLOW_CUSTOM_CODE); answers name files relative to the model folder."""
from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app
from tests import model_builders as mb

ROW = [[1.0, 2.0, 3.0]]


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """`scale/1/c.keras` with its `scale/custom_objects.py` and `scale/serving.json`, and a flat `flat.keras` with
    `flat.custom_objects.py`: both modules write a marker file when they are imported."""
    folder = tmp_path / "models"
    mb.custom_layer_keras(folder / "scale" / "1" / "c.keras")
    mb.custom_layer_keras(folder / "flat.keras")
    (folder / "scale" / "serving.json").write_text('{"max_batch_size": 8}')
    for name, code in (("scale/custom_objects.py", "scale-ran"), ("flat.custom_objects.py", "flat-ran")):
        marker = tmp_path / code
        (folder / name).write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                                   + mb.CUSTOM_LAYER_CODE)
    return folder


def served(model_dir: Path, **settings):
    application = create_app({"TESTING": True, "MODEL_DIR": model_dir, **settings})
    client = application.test_client()
    client.get("/health")  # starts loading
    assert application.extensions["registry"].wait_until_settled(120)
    return application, client


def test_custom_objects_is_refused_without_the_opt_in_and_never_runs(model_dir, tmp_path):
    application, client = served(model_dir)
    try:
        for name in ("scale", "flat"):
            (version,) = client.get(f"/models/{name}").json["versions"]
            assert version["state"] == "FAILED"
            assert "SERVING_ALLOW_CUSTOM_CODE=true" in version["error"] and "is not imported" in version["error"]
            assert client.post("/predict", json={"model": name, "instances": ROW}).status_code == 503
        assert not (tmp_path / "scale-ran").exists() and not (tmp_path / "flat-ran").exists()
    finally:
        application.extensions["registry"].close()


def test_custom_objects_is_imported_and_served_with_the_opt_in(model_dir, tmp_path):
    application, client = served(model_dir, ALLOW_CUSTOM_CODE=True)
    try:
        for name in ("scale", "flat"):
            answer = client.post("/predict", json={"model": name, "instances": ROW})
            assert answer.status_code == 200, answer.json
            assert answer.json["predictions"] == [[3.0, 6.0, 9.0]]  # Scale(3.0) from the operator's module
        assert (tmp_path / "scale-ran").exists() and (tmp_path / "flat-ran").exists()
    finally:
        application.extensions["registry"].close()


def test_model_answers_name_files_relative_to_the_model_folder(model_dir):
    application, client = served(model_dir)
    try:
        (versioned,) = client.get("/models/scale").json["versions"]
        assert (versioned["source"], versioned["settings_file"], versioned["custom_objects"]) == (
            "scale/1/c.keras", "scale/serving.json", "scale/custom_objects.py")
        flat = client.get("/models/flat/versions/1").json
        assert (flat["source"], flat["settings_file"], flat["custom_objects"]) == (
            "flat.keras", None, "flat.custom_objects.py")
        texts = [client.get(path).get_data(as_text=True) for path in ("/models", "/models/scale", "/models/flat")]
        assert not any(str(model_dir) in text for text in texts)
    finally:
        application.extensions["registry"].close()
