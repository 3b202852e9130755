"""`flask --app wsgi models check PATH...`: will my file serve?"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from app.cli import models_cli
from tests import model_builders as mb

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(models_cli, ["check", *args])


def test_a_good_file_prints_path_inputs_outputs_and_warmup(tmp_path):
    result = invoke(str(mb.two_inputs(tmp_path / "two.keras")))
    assert result.exit_code == 0, result.output
    assert "OK via keras3" in result.output and "warm-up" in result.output
    assert "input  a: float32 [null, 4]" in result.output
    assert "input  b: float32 [null, 3]" in result.output
    assert "output" in result.output
    assert "1 of 1 file(s) will serve" in result.output


def test_a_failing_file_prints_its_reason_and_exits_non_zero(tmp_path):
    good = mb.dense(tmp_path / "good.keras")
    bad = mb.pickle_h5(tmp_path / "bad.h5")
    result = invoke(str(good), str(bad))
    assert result.exit_code == 1
    assert f"{bad}: FAILED bad.h5 is a Python pickle, not a Keras file" in result.output
    assert "1 of 2 file(s) will serve" in result.output


def test_legacy_file_names_the_translation(tmp_path):
    def as_list(config):
        config["config"] = config["config"]["layers"]
        return mb.strip_modules(config)

    path = mb.edit_h5(mb.tf_keras_h5(tmp_path / "old.h5"), as_list, "2.1.3")
    result = invoke(str(path))
    assert result.exit_code == 0, result.output
    assert "keras3+translated(sequential_layer_list)" in result.output
    assert "saved by Keras 2.1.3" in result.output


def test_settings_and_custom_code_next_to_the_file_are_honoured(tmp_path):
    lam = mb.lambda_h5(tmp_path / "lam.h5")
    refused = invoke(str(lam))
    assert refused.exit_code == 1 and '"safe_mode": false' in refused.output
    (tmp_path / "lam.serving.json").write_text(json.dumps({"safe_mode": False}))
    assert invoke(str(lam)).exit_code == 0
    custom = mb.custom_layer_keras(tmp_path / "model" / "1" / "c.keras")
    assert "unknown layer class 'Scale'" in invoke(str(custom)).output
    code = tmp_path / "model" / "custom_objects.py"
    code.write_text(mb.CUSTOM_LAYER_CODE)
    refused = invoke(str(custom))  # found beside the file, imported only when named
    assert refused.exit_code == 1 and "--custom-objects FILE" in refused.output
    assert invoke(str(custom), "--custom-objects", str(code)).exit_code == 0


def test_registered_on_the_flask_app(runner, tmp_path):
    result = runner.invoke(args=["models", "check", str(mb.dense(tmp_path / "d.keras"))])
    assert result.exit_code == 0, result.output
    assert "OK via keras3" in result.output


def test_flask_command_line(tmp_path):
    path = mb.corrupt(tmp_path / "junk.h5")
    env = {"SERVING_MODEL_DIR": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "models", "check", str(path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "junk.h5: FAILED" in done.stdout and "not a Keras file" in done.stdout


def test_flask_check_neither_loads_the_model_folder_nor_prints_its_logs(tmp_path):
    models, marker = tmp_path / "models", tmp_path / "folder-was-loaded"
    mb.dense(models / "served" / "1" / "m.keras")
    (models / "served" / "custom_objects.py").write_text(  # imported when the folder's model loads
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('loaded')\nCUSTOM_OBJECTS = {{}}\n")
    checked = mb.dense(tmp_path / "checked.keras")
    env = {"SERVING_MODEL_DIR": str(models), "SERVING_LOG_LEVEL": "DEBUG", "SERVING_ALLOW_CUSTOM_CODE": "true",
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "models", "check", str(checked)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not marker.exists(), "the check loaded the model folder"
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{checked}: OK via keras3") and lines[-1] == "1 of 1 file(s) will serve"
    assert all(line.startswith("  ") for line in lines[1:-1]), done.stdout


def test_python_module_entry_point_runs_check_without_the_app(tmp_path):
    good = mb.dense(tmp_path / "d.keras")
    done = subprocess.run([sys.executable, "-m", "app.cli", "check", str(good)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OK via keras3" in done.stdout


def test_python_module_help_lists_the_check_command():
    done = subprocess.run([sys.executable, "-m", "app.cli", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage: python -m app.cli [OPTIONS] COMMAND" in done.stdout and "check" in done.stdout
