"""Each log line and each traceback is written once by a real gunicorn, after absl has logged too.

absl's first log call puts a stderr handler on the root logger (`logging.basicConfig()`); the `app`
loggers had propagated to it, so their lines (and tracebacks) came out twice. The server here is the
real app with two routes added (`app_with_logging_routes`), run by gunicorn with gunicorn.conf.py.
"""
from __future__ import annotations

import logging

import pytest
import requests

from tests.support import ROOT, running_server

pytestmark = pytest.mark.e2e


def app_with_logging_routes():
    """The server's app (gunicorn calls this factory) plus a route that logs and one that fails."""
    import absl.logging
    from flask import request

    from app import create_app

    app = create_app()

    @app.get("/test/log")
    def log_line():
        """Log through absl, then through an `app` logger."""
        absl.logging.warning("absl line %s", request.args["n"])
        logging.getLogger("app.test").warning("app line %s", request.args["n"])
        return {"logged": True}

    @app.get("/test/fail")
    def fail():
        """An unhandled exception."""
        raise RuntimeError("a bug in a view")

    return app


@pytest.fixture(scope="module")
def server_log():
    """The whole log (stdout and stderr) of a server that answered /test/log twice and /test/fail once."""
    env = {"WEB_CONCURRENCY": "1", "SERVING_MAX_QUEUE_WAIT_MS": "0"}
    with running_server(ROOT / "models", env, app="tests.e2e.test_logging:app_with_logging_routes()") as base:
        answers = [requests.get(f"{base}/test/log", params={"n": n}, timeout=30) for n in (1, 2)]
        failure = requests.get(f"{base}/test/fail", timeout=30)
        log_path = base.log_path
    assert [answer.status_code for answer in answers] == [200, 200]
    assert failure.status_code == 500 and failure.json()["error"]["code"] == "internal_error"
    return log_path.read_text(), failure.json()["error"]["details"]["request_id"]


def test_an_app_log_line_is_written_once_after_absl_has_logged(server_log):
    log, _ = server_log
    assert log.count("absl line 1") == 1, log[-3000:]
    assert log.count("app line 1") == 1, log[-3000:]
    assert log.count("app line 2") == 1, log[-3000:]
    assert "[WARNING] app.test: app line 2" in log  # the app's own format, on stdout


def test_an_unhandled_exception_is_logged_once_with_its_traceback(server_log):
    log, request_id = server_log
    assert log.count("RuntimeError: a bug in a view") == 1, log[-3000:]
    assert log.count(f"request id {request_id}") == 1, log[-3000:]
    assert log.count("Traceback (most recent call last)") == 1, log[-3000:]
