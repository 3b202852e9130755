"""schemathesis against a real gunicorn: every operation of /openapi.json, generated cases, checked answers.

The run (schemathesis' CLI, every phase: examples, coverage, fuzzing, stateful) sends positive and
negative cases and checks each answer: never a 5xx, its status, content type, headers and body as the
document says, and 405 with `Allow` for a method the document does not list. A fixed seed makes it
repeatable: `schemathesis run URL/openapi.json --seed 7 --max-examples 25 --workers 1 -H "Authorization: Bearer T"`
(one worker: several threads of hypothesis can trip CPython 3.11's "AST constructor recursion depth mismatch").
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, running_server

pytestmark = pytest.mark.e2e

TOKEN = "schemathesis-token"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance", "unsupported_method")
MIN_CASES = 1000
CONTROL = "^/v2/repository/models/"  # load and unload
CONTROL_OPERATIONS = 2


def test_every_generated_request_gets_a_documented_answer_and_none_is_a_5xx(tmp_path: Path):
    env = {"WEB_CONCURRENCY": "1", "SERVING_API_TOKENS": TOKEN, "SERVING_MAX_QUEUE_WAIT_MS": "0"}
    with running_server(ROOT / "models", env) as base:
        # schemathesis leaves out the operation that serves the document it loaded (GET /openapi.json)
        operations = sum(len(methods) for methods in requests.get(f"{base}/openapi.json", timeout=10)
                         .json()["paths"].values()) - 1
        # Load and unload change what serves (an unloaded model answers 503 by design): every other
        # operation first, then those two alone.
        served = _run(base, tmp_path / "served", "--exclude-path-regex", CONTROL)
        control = _run(base, tmp_path / "control", "--include-path-regex", CONTROL)
    for (done, summary), expected in ((served, operations - CONTROL_OPERATIONS), (control, CONTROL_OPERATIONS)):
        output = done.stdout[-6000:]
        assert done.returncode == 0, output
        assert summary["failures"] == [] and summary["errors"] == [], output
        counts = summary["operations"]
        assert counts["tested"] == counts["selected"] == expected and counts["total"] == operations, output
    assert served[1]["test_cases"]["generated"] >= MIN_CASES, served[0].stdout[-6000:]


def _run(base: str, folder: Path, *selection: str) -> tuple[subprocess.CompletedProcess, dict]:
    """One schemathesis run over the operations `selection` picks: the process and its JSON report."""
    folder.mkdir()
    report = folder / "report.json"
    command = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/openapi.json", *selection,
               "--checks", ",".join(CHECKS), "--seed", "7", "--max-examples", "25", "--workers", "1",
               "--header", f"Authorization: Bearer {TOKEN}", "--request-timeout", "30",
               "--report", "json", "--report-json-path", str(report), "--max-failures", "20"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    return done, json.loads(report.read_text())
