"""Traces: a span per request with queue and forward-pass children, W3C traceparent honoured, the trace id
in the access line; off by default (nothing of opentelemetry imported)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import create_app
from app.observability import tracing
from tests import model_builders
from tests.support import ROOT, running_server

CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracing-models")
    model_builders.dense(folder / "dense.keras")
    return folder


@pytest.fixture(scope="module")
def exporter():
    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    tracing.install(provider)
    yield finished
    tracing.uninstall()


@pytest.fixture(scope="module")
def traced_app(model_dir, exporter):
    """One dense model (`dense`, version 1), access lines on (text), traced into `exporter`."""
    application = create_app({"MODEL_DIR": model_dir, "MAX_QUEUE_WAIT_MS": 0, "ACCESS_LOG": True})
    assert application.extensions["registry"].wait_until_settled(120)
    yield application
    application.extensions["registry"].close()


def predict(app, exporter, headers=None, rows=2):
    exporter.clear()
    answer = app.test_client().post("/predict", json={"instances": np.zeros((rows, 4)).tolist()},
                                    headers=headers or {})
    assert answer.status_code == 200, answer.get_json()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    return answer, spans


def test_a_request_makes_a_server_span_with_queue_and_inference_children(traced_app, exporter):
    _, spans = predict(traced_app, exporter, rows=3)
    assert set(spans) == {"POST /predict", "queue", "inference"}
    request = spans["POST /predict"]
    assert {key: request.attributes[key] for key in ("model", "version", "rows", "http.response.status_code")} == {
        "model": "dense", "version": 1, "rows": 3, "http.response.status_code": 200}
    for child in (spans["queue"], spans["inference"]):
        assert child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id
        assert request.start_time <= child.start_time <= child.end_time <= request.end_time
    assert spans["queue"].end_time <= spans["inference"].start_time


def test_a_client_traceparent_becomes_the_parent_of_the_request_span(traced_app, exporter):
    _, spans = predict(traced_app, exporter, headers={"traceparent": TRACEPARENT})
    request = spans["POST /predict"]
    assert format(request.context.trace_id, "032x") == CLIENT_TRACE_ID
    assert format(request.parent.span_id, "016x") == CLIENT_SPAN_ID and request.parent.is_remote


def test_the_access_line_carries_the_trace_id(traced_app, exporter, caplog):
    with caplog.at_level(logging.INFO, logger="app.access"):
        predict(traced_app, exporter, headers={"traceparent": TRACEPARENT})
    lines = [record.getMessage() for record in caplog.records if record.name == "app.access"]
    assert len(lines) == 1 and f"trace_id={CLIENT_TRACE_ID}" in lines[0].split()


def test_the_exporters_come_from_otel_traces_exporter_and_serving_traces_can_veto():
    assert tracing.wanted_exporters(True, {}) == []
    assert tracing.wanted_exporters(True, {"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.wanted_exporters(True, {"OTEL_TRACES_EXPORTER": "console, otlp"}) == ["console", "otlp"]
    assert tracing.wanted_exporters(False, {"OTEL_TRACES_EXPORTER": "otlp"}) == []


OFF_SCRIPT = """
import sys
from app import create_app
from app.observability import tracing
from app.settings import load_settings
app = create_app({"MODEL_DIR": sys.argv[1]})
app.extensions["registry"].wait_until_settled(120)
app.test_client().post("/predict", json={"instances": [[0, 0, 0, 0]]})
tracing.setup(load_settings().traces)  # what gunicorn's post_worker_init does
app.test_client().post("/predict", json={"instances": [[0, 0, 0, 0]]})
print(tracing.tracer is None, sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""


@pytest.mark.parametrize("env", [{}, {"OTEL_TRACES_EXPORTER": "none"},
                                 {"OTEL_TRACES_EXPORTER": "console", "SERVING_TRACES": "false"}],
                         ids=["unset", "none", "vetoed"])
def test_traces_are_off_by_default_and_nothing_of_opentelemetry_is_imported(model_dir, env):
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "SERVING_"))}
    done = subprocess.run([sys.executable, "-c", OFF_SCRIPT, str(model_dir)], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True []"


def test_gunicorn_workers_export_spans_with_the_console_exporter(model_dir):
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "keras-serve-test", "WEB_CONCURRENCY": "1",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with running_server(model_dir, env) as base:
        answer = requests.post(f"{base}/predict", json={"instances": [[0, 0, 0, 0]]},
                               headers={"traceparent": TRACEPARENT}, timeout=30)
        assert answer.status_code == 200
        deadline = time.monotonic() + 30
        while CLIENT_TRACE_ID not in base.log_path.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
        log = base.log_path.read_text(errors="replace")
    assert f'"trace_id": "0x{CLIENT_TRACE_ID}"' in log
    assert '"service.name": "keras-serve-test"' in log and '"name": "POST /predict"' in log
    assert '"name": "inference"' in log  # the console exporter prints each span as JSON


def test_a_grpc_call_makes_a_server_span_with_queue_and_inference_children(traced_app, exporter):
    import tritonclient.grpc as triton_grpc

    from app.api.grpc.server import start_server

    settings = traced_app.extensions["settings"].model_copy(update={"grpc_port": 0})
    server = start_server(traced_app.extensions["dataplane"], settings, "127.0.0.1", None)
    try:
        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.port}")
        features = triton_grpc.InferInput("features", [2, 4], "FP32")
        features.set_data_from_numpy(np.zeros((2, 4), dtype=np.float32))
        exporter.clear()
        client.infer("dense", [features], headers={"traceparent": TRACEPARENT})
        spans = {span.name: span for span in exporter.get_finished_spans()}
    finally:
        server.stop(0)
    call = spans["POST /inference.GRPCInferenceService/ModelInfer"]
    assert format(call.context.trace_id, "032x") == CLIENT_TRACE_ID
    assert call.attributes["model"] == "dense" and call.attributes["rows"] == 2
    assert call.attributes["http.response.status_code"] == 200
    assert spans["queue"].parent.span_id == call.context.span_id
    assert spans["inference"].parent.span_id == call.context.span_id
