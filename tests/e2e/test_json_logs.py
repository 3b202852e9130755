"""SERVING_LOG_FORMAT=json under real gunicorn: every line the server writes is one JSON object
(app, gunicorn, TensorFlow's C++ start-up lines through the master's relay), each written once, and
the access line of a request carries the id its client sent."""
from __future__ import annotations

import json

import pytest
import requests

from tests.support import ROOT, running_server

pytestmark = pytest.mark.e2e

ACCESS_FIELDS = {"time", "level", "request_id", "method", "path", "status", "model", "version", "rows",
                 "duration_ms", "queue_ms", "bytes_in", "bytes_out", "remote_addr", "user_agent"}


@pytest.fixture(scope="module")
def log_lines():
    """Every line of a two-worker json-mode server's output (stdout and stderr), after a few requests."""
    env = {"WEB_CONCURRENCY": "2", "SERVING_LOG_FORMAT": "json", "SERVING_MAX_QUEUE_WAIT_MS": "0"}
    with running_server(ROOT / "models", env) as base:
        ok = requests.post(f"{base}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]] * 2},
                           headers={"X-Request-ID": "client-sent-id-42", "User-Agent": "json-logs-test"}, timeout=30)
        bad = requests.post(f"{base}/predict", json={"instances": [[1.0, 2.0]]}, timeout=30)
        made = requests.get(f"{base}/health", timeout=30)
        log_path = base.log_path
    assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "client-sent-id-42"
    assert bad.status_code == 422
    return log_path.read_text().splitlines(), made.headers["X-Request-ID"]


def test_every_line_is_one_json_object(log_lines):
    lines, _ = log_lines
    assert len(lines) > 10
    for line in lines:
        record = json.loads(line)  # raises on any plain-text line
        assert isinstance(record, dict) and {"time", "level", "message"} <= record.keys(), line


def test_gunicorn_the_app_and_tensorflow_lines_are_all_there_each_once(log_lines):
    lines, _ = log_lines
    records = [json.loads(line) for line in lines]
    loggers = {record.get("logger") for record in records}
    assert {"gunicorn.error", "app.access", "app.serving.manager"} <= loggers
    assert len(lines) == len(set(lines))  # no line written twice (each carries its own time)
    loaded = [r for r in records if r.get("event") == "loaded"]
    assert len(loaded) == 2  # one line per load, one load per worker
    assert len({r["worker"] for r in loaded}) == 2  # the pid of each worker
    assert all(r["logger"] == "app.serving.manager" and r["state"] == "AVAILABLE" and r["model"] == "iris"
               and r["version"] == 1 and r["duration_s"] > 0 for r in loaded)


def test_the_access_line_carries_the_request_id_the_client_sent(log_lines):
    lines, _ = log_lines
    records = [json.loads(line) for line in lines]
    mine = [r for r in records if r.get("request_id") == "client-sent-id-42"]
    assert len(mine) == 1
    line = mine[0]
    assert line.keys() >= ACCESS_FIELDS
    assert (line["method"], line["path"], line["status"], line["model"], line["version"], line["rows"]) == (
        "POST", "/predict", 200, "iris", 1, 2)
    assert line["duration_ms"] > 0 and line["queue_ms"] >= 0 and line["bytes_in"] > 0 and line["bytes_out"] > 0
    assert line["remote_addr"] == "127.0.0.1" and line["user_agent"] == "json-logs-test"


def test_a_request_without_an_id_is_logged_with_the_one_it_was_given(log_lines):
    lines, made = log_lines
    records = [json.loads(line) for line in lines]
    health = [r for r in records if r.get("logger") == "app.access" and r.get("request_id") == made]
    assert len(health) == 1 and health[0]["path"] == "/health" and health[0]["status"] == 200
    refused = [r for r in records if r.get("logger") == "app.access" and r.get("status") == 422]
    assert len(refused) == 1 and refused[0]["error"] == "shape_mismatch" and refused[0]["model"] == "iris"
