"""gRPC calls in the metrics and the access log, under real gunicorn: protocol="grpc", HTTP-like codes."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.model_builders import dense
from tests.support import free_port, running_server

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.e2e

CALLS = 7


def total(base: str, name: str, **labels: str) -> float:
    """The sum of one sample over the series matching `labels` in `GET /metrics`."""
    answer = requests.get(f"{base}/metrics", timeout=10)
    assert answer.status_code == 200
    return sum(sample.value for family in text_string_to_metric_families(answer.text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def access_lines(log_path, predicate, at_least: int = 1, timeout: float = 20.0) -> list[dict]:
    """The JSON access lines of the server log that satisfy `predicate`, once there are `at_least` (or time-out)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in map(json.loads, (text for text in log_path.read_text().splitlines()
                                                    if text.startswith("{")))
                 if line.get("logger") == "app.access" and predicate(line)]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One gunicorn worker serving `dense`, gRPC on a free port, JSON logs; yields (HTTP base, triton client)."""
    folder = tmp_path_factory.mktemp("grpc-metrics-models")
    dense(folder / "dense.keras")
    port = free_port()
    env = {"WEB_CONCURRENCY": "1", "SERVING_GRPC_PORT": str(port), "SERVING_LOG_FORMAT": "json"}
    with running_server(folder, env) as base:
        client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.is_server_ready():
                    break
            except InferenceServerException:
                time.sleep(0.2)
        yield base, client
        client.close()


def infer_input(rows: int):
    item = grpcclient.InferInput("features", [rows, 4], "FP32")
    item.set_data_from_numpy(np.zeros((rows, 4), dtype=np.float32))
    return item


def test_n_model_infer_calls_grow_the_grpc_request_total_by_n_with_one_access_line_each(served):
    base, client = served
    before = total(base, "keras_serve_requests_total", protocol="grpc", code="200", model="dense", version="1")
    durations = total(base, "keras_serve_request_duration_seconds_count", protocol="grpc", model="dense")
    for index in range(CALLS):
        client.infer("dense", [infer_input(2)], request_id=f"grpc-metrics-{index}")
    assert total(base, "keras_serve_requests_total", protocol="grpc", code="200", model="dense",
                 version="1") - before == CALLS
    assert total(base, "keras_serve_request_duration_seconds_count", protocol="grpc", model="dense") \
        - durations == CALLS
    assert total(base, "keras_serve_inflight_requests") == 0
    lines = access_lines(base.log_path, lambda line: line.get("path") == "/inference.GRPCInferenceService/ModelInfer"
                         and line.get("status") == 200, at_least=CALLS + 1, timeout=3)  # none beyond CALLS
    assert len(lines) == CALLS
    line = lines[-1]
    assert line["protocol"] == "grpc" and line["method"] == "POST" and line["model"] == "dense"
    assert line["version"] == 1 and line["rows"] == 2 and line["duration_ms"] > 0
    assert line["remote_addr"] == "127.0.0.1" and "grpc" in line["user_agent"]


def test_a_refused_call_is_counted_with_the_http_status_rest_answers_and_other_rpcs_are_only_logged(served):
    base, client = served
    before = total(base, "keras_serve_requests_total", protocol="grpc", code="404")
    live_before = total(base, "keras_serve_requests_total", protocol="grpc")
    with pytest.raises(InferenceServerException) as caught:
        client.infer("nope", [infer_input(1)])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert total(base, "keras_serve_requests_total", protocol="grpc", code="404") - before == 1
    assert client.is_server_live()  # ServerLive: not an inference call, so not counted
    assert total(base, "keras_serve_requests_total", protocol="grpc") - live_before == 1
    refused = access_lines(base.log_path, lambda line: line.get("protocol") == "grpc" and line.get("status") == 404)
    assert refused and refused[-1]["error"] == "model_not_found"
    live = access_lines(base.log_path, lambda line: line.get("path") == "/inference.GRPCInferenceService/ServerLive")
    assert live and live[-1]["status"] == 200 and live[-1]["model"] is None
