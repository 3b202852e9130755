"""Settings: defaults, environment variables, overrides; bad values fail naming the variable and the value."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from app.errors import ConfigError
from app.serving.model_settings import ModelSettings, batching_settings, model_runtime, read_model_settings
from app.settings import REPO_ROOT, SETTING_NAMES, GunicornSettings, Settings, load_gunicorn_settings, load_settings


def _settings_table_script():
    spec = importlib.util.spec_from_file_location("settings_table", REPO_ROOT / "scripts" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_match_the_documented_ones():
    settings = load_settings(environ={})
    assert settings.model_dir == REPO_ROOT / "models"
    assert settings.max_content_length == 32 * 1024 * 1024
    assert settings.strict_readiness is True
    assert settings.default_model is None
    assert (settings.runtime, settings.log_level) == ("auto", "INFO")


def test_environment_overrides_defaults_and_overrides_override_environment():
    env = {"SERVING_MAX_REQUEST_ROWS": "7", "SERVING_STRICT_READINESS": "false", "SERVING_MODEL_DIR": "/srv/m",
           "SERVING_RUNTIME": " TF ", "SERVING_DEFAULT_MODEL": "  "}
    settings = load_settings({"MAX_REQUEST_ROWS": 9, "max_batch_size": 3}, environ=env)
    assert settings.max_request_rows == 9
    assert settings.max_batch_size == 3
    assert settings.strict_readiness is False
    assert settings.model_dir == Path("/srv/m")
    assert settings.runtime == "tf"
    assert settings.default_model is None


def test_an_explicit_environment_is_the_only_one_read(monkeypatch):
    monkeypatch.setenv("SERVING_MAX_BATCH_SIZE", "5")
    assert load_settings(environ={}).max_batch_size == 256
    assert load_settings().max_batch_size == 5


def test_settings_read_the_process_environment_like_load_settings(monkeypatch):
    monkeypatch.setenv("SERVING_MAX_QUEUE_ROWS", "33")
    monkeypatch.setenv("SERVING_LOG_LEVEL", "debug")
    monkeypatch.setenv("GUNICORN_THREADS", "6")
    assert Settings() == load_settings()
    assert Settings().log_level == "DEBUG"
    assert GunicornSettings() == load_gunicorn_settings()
    assert GunicornSettings().threads == 6


@pytest.mark.parametrize("var,value", [
    ("SERVING_MAX_BATCH_SIZE", "0"),
    ("SERVING_MAX_BATCH_SIZE", "many"),
    ("SERVING_MAX_CONTENT_LENGTH", "-5"),
    ("SERVING_STRICT_READINESS", "maybe"),
    ("SERVING_REQUEST_TIMEOUT", "nan"),
    ("SERVING_LOADING_WAIT", "inf"),
    ("SERVING_LOG_LEVEL", "LOUD"),
    ("SERVING_RUNTIME", "gpu"),
])
def test_invalid_values_fail_at_startup_naming_the_variable_and_value(var, value):
    with pytest.raises(ConfigError, match=f"^{var}='{value}' is invalid: "):
        load_settings(environ={var: value})


def test_invalid_or_unknown_overrides_fail_naming_the_key():
    with pytest.raises(ConfigError, match="^MAX_BATCH_SIZE=0 is invalid"):
        load_settings({"MAX_BATCH_SIZE": 0}, environ={"SERVING_MAX_BATCH_SIZE": "4"})
    with pytest.raises(ConfigError, match="'TESTING' is not a setting"):
        load_settings({"TESTING": True}, environ={})


def test_setting_names_are_the_upper_case_override_keys():
    assert "MODEL_DIR" in SETTING_NAMES and "TESTING" not in SETTING_NAMES
    assert load_settings({name: getattr(Settings(), name.lower()) for name in SETTING_NAMES}, environ={})


def test_settings_are_frozen():
    settings = load_settings(environ={})
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        settings.max_batch_size = 1


def test_gunicorn_settings_have_their_documented_defaults_and_variables():
    assert load_gunicorn_settings({}) == GunicornSettings.model_construct(
        host="0.0.0.0", port=8000, web_concurrency=2, threads=4, timeout=120, graceful_timeout=30,
        access_log=False, log_level="info")
    env = {"HOST": "127.0.0.1", "PORT": "9001", "WEB_CONCURRENCY": "3", "GUNICORN_ACCESS_LOG": "true",
           "GUNICORN_LOG_LEVEL": "DEBUG", "GUNICORN_GRACEFUL_TIMEOUT": "5"}
    settings = load_gunicorn_settings(env)
    assert (settings.host, settings.port, settings.web_concurrency) == ("127.0.0.1", 9001, 3)
    assert (settings.access_log, settings.log_level, settings.graceful_timeout) == (True, "debug", 5)
    with pytest.raises(ConfigError, match="^GUNICORN_THREADS='0' is invalid"):
        load_gunicorn_settings({"GUNICORN_THREADS": "0"})


def test_settings_import_without_tensorflow():
    code = "import sys, app.settings; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


def test_missing_serving_json_sets_nothing(tmp_path):
    model = read_model_settings(tmp_path / "serving.json")
    assert model == read_model_settings(None) == ModelSettings()
    settings = load_settings({"MAX_QUEUE_ROWS": 64, "RUNTIME": "tf"}, environ={})
    assert batching_settings(settings, model).max_queue_rows == 64
    assert (model.safe_mode, model_runtime(settings, model)) == (True, "tf")


def test_serving_json_overrides_the_server_settings(tmp_path):
    path = tmp_path / "serving.json"
    path.write_text('{"max_batch_size": 4, "max_batch_delay_ms": 0.5, "request_timeout": 3, "runtime": "tflite"}')
    model = read_model_settings(path)
    batching = batching_settings(load_settings({"MAX_QUEUE_ROWS": 64}, environ={}), model)
    assert (batching.max_batch_size, batching.max_batch_delay_ms, batching.request_timeout) == (4, 0.5, 3.0)
    assert batching.max_queue_rows == 64
    assert model_runtime(load_settings(environ={}), model) == "tflite"


@pytest.mark.parametrize("text,reason", [
    ('{"max_batch_size": 0, "typo": 1}', "serving.json is invalid: max_batch_size: .*; typo: "),
    ('{"max_batch_size": 4.0}', "serving.json is invalid: max_batch_size: input should be a valid integer"),
    ('{"max_queue_rows": true}', "serving.json is invalid: max_queue_rows"),
    ('{"request_timeout": NaN}', "serving.json is invalid: request_timeout: input should be a finite number"),
    ('{"runtime": "TF"}', "serving.json is invalid: runtime"),
    ("[1]", "serving.json must hold a JSON object"),
    ("{bad", "serving.json is not valid JSON"),
])
def test_invalid_serving_json_fails_with_a_one_line_reason_naming_the_file(tmp_path, text, reason):
    path = tmp_path / "serving.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^{reason}") as caught:
        read_model_settings(path)
    assert "\n" not in str(caught.value)


def test_operations_doc_holds_the_current_settings_table():
    script = _settings_table_script()
    text = script.DOC.read_text(encoding="utf-8")
    assert script.with_current_block(text) == text, "run: .venv/bin/python scripts/settings_table.py --write"
    documented = {line.split("`")[1] for line in script.table().splitlines()[2:]}
    assert {"SERVING_MODEL_DIR", "SERVING_LOG_LEVEL", "PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS"} <= documented
    assert len(documented) == len(Settings.model_fields) + len(GunicornSettings.model_fields)


def test_the_table_check_notices_a_stale_block():
    script = _settings_table_script()
    stale = f"# Operations\n\n{script.START}\n| `SERVING_GONE` | `1` | removed |\n{script.END}\n\nAfter.\n"
    current = script.with_current_block(stale)
    assert "SERVING_GONE" not in current and "`SERVING_MAX_BATCH_SIZE` | `256` |" in current
    assert current.endswith(f"{script.END}\n\nAfter.\n")
