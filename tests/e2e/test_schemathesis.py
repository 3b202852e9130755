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


def test_every_generated_request_gets_a_documented_answer_and_none_is_a_5xx(tmp_path: Path):
    env = {"WEB_CONCURRENCY": "1", "SERVING_API_TOKENS": TOKEN, "SERVING_MAX_QUEUE_WAIT_MS": "0"}
    with running_server(ROOT / "models", env) as base:
        # schemathesis leaves out the operation that serves the document it loaded (GET /openapi.json)
        operations = sum(len(methods) for methods in requests.get(f"{base}/openapi.json", timeout=10)
                         .json()["paths"].values()) - 1
        report = tmp_path / "report.json"
        command = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/openapi.json",
                   "--checks", ",".join(CHECKS), "--seed", "7", "--max-examples", "25", "--workers", "1",
                   "--header", f"Authorization: Bearer {TOKEN}", "--request-timeout", "30",
                   "--report", "json", "--report-json-path", str(report), "--max-failures", "20"]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    summary = json.loads(report.read_text())
    output = done.stdout[-6000:]
    assert done.returncode == 0, output
    assert summary["failures"] == [] and summary["errors"] == [], output
    assert summary["operations"]["tested"] == summary["operations"]["total"] == operations, output
    assert summary["test_cases"]["generated"] >= MIN_CASES, output
