"""Settings: defaults, SERVING_* environment variables, test_config; bad values fail naming the variable."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import REPO_ROOT, SETTINGS, load_config
from app.errors import ConfigError


def test_defaults_match_the_documented_ones():
    config = load_config(environ={})
    assert config["MODEL_DIR"] == REPO_ROOT / "models"
    assert config["MAX_CONTENT_LENGTH"] == 32 * 1024 * 1024
    assert config["STRICT_READINESS"] is True
    assert config["DEFAULT_MODEL"] is None


def test_environment_overrides_defaults_and_test_config_overrides_environment():
    env = {"SERVING_MAX_REQUEST_ROWS": "7", "SERVING_STRICT_READINESS": "false", "SERVING_MODEL_DIR": "/srv/m"}
    config = load_config(environ=env, test_config={"MAX_REQUEST_ROWS": 9})
    assert config["MAX_REQUEST_ROWS"] == 9
    assert config["STRICT_READINESS"] is False
    assert config["MODEL_DIR"] == Path("/srv/m")


@pytest.mark.parametrize("var,value", [
    ("SERVING_MAX_BATCH_SIZE", "0"),
    ("SERVING_MAX_BATCH_SIZE", "many"),
    ("SERVING_MAX_CONTENT_LENGTH", "-5"),
    ("SERVING_STRICT_READINESS", "maybe"),
    ("SERVING_REQUEST_TIMEOUT", "nan"),
    ("SERVING_LOG_LEVEL", "LOUD"),
])
def test_invalid_values_fail_at_startup_naming_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        load_config(environ={var: value})


def test_readme_documents_every_setting_in_one_table():
    readme = (REPO_ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(SERVING_[A-Z_]+)` \|", readme, flags=re.M))
    assert documented == {s.env_var for s in SETTINGS}
