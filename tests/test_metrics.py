"""Metrics, request facts, access lines and the observability documents, in one process (the
multiprocess sums under real gunicorn are in tests/e2e/test_metrics_e2e.py)."""
from __future__ import annotations

import json
import logging
import re
import threading
import time

import numpy as np
import pytest
import yaml
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.logs import json_formatter
from app.observability import metrics
from app.observability import tally as tally_module
from app.observability.metrics import TALLY, Tally
from app.observability.middleware import protocol_of
from app.observability.stderr_relay import as_json, level_of
from app.serving.batching import Batcher
from app.serving.types import BatchingSettings
from tests import model_builders
from tests.support import ROOT

OBSERVABILITY = ROOT / "docs" / "observability"


def scrape(client) -> dict[tuple[str, tuple], float]:
    """`GET /metrics` as {(sample name, sorted labels): value}."""
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.get_data(as_text=True)) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def dense_app(tmp_path_factory):
    """An app serving one small dense model (model `dense`, version 1), access lines on (text)."""
    folder = tmp_path_factory.mktemp("metrics-models")
    model_builders.dense(folder / "dense.keras")
    application = create_app({"MODEL_DIR": folder, "MAX_REQUEST_ROWS": 8, "MAX_QUEUE_WAIT_MS": 0,
                              "ACCESS_LOG": True})
    assert application.extensions["registry"].wait_until_settled(120)
    yield application
    application.extensions["registry"].close()


def rows(n: int) -> dict:
    return {"instances": np.zeros((n, 4)).tolist()}


def test_protocol_is_read_from_the_inference_paths_only():
    assert protocol_of("POST", "/predict") == "native"
    assert protocol_of("POST", "/v1/models/m/versions/2:predict") == "tfserving"
    assert protocol_of("POST", "/v2/models/m/infer") == "v2"
    assert protocol_of("GET", "/predict") is None
    assert protocol_of("POST", "/v1/models/m:classify") is None
    assert protocol_of("GET", "/v2/models/m/ready") is None
    assert protocol_of("GET", "/metrics") is None


def test_a_tally_writes_exactly_what_it_counted_into_counters_and_histograms():
    counter = Counter("tally_test_total", "t", registry=None)
    direct = Histogram("tally_direct_seconds", "t", buckets=(0.001, 0.01, 0.1), registry=None)
    tallied = Histogram("tally_tallied_seconds", "t", buckets=(0.001, 0.01, 0.1), registry=None)
    tally = Tally()
    observations = [0.0, 0.0005, 0.001, 0.002, 0.05, 0.1, 3.0]
    for seconds in observations:
        tally.begin()
        tally.end(counter, tallied, seconds)
        direct.observe(seconds)
    assert tally.inflight == 0 and counter._value.get() == 0  # nothing written before a flush
    tally.flush()
    assert counter._value.get() == len(observations)
    by_bucket = {s.labels.get("le"): s.value for s in direct.collect()[0].samples if s.name.endswith("_bucket")}
    assert {s.labels.get("le"): s.value for s in tallied.collect()[0].samples if s.name.endswith("_bucket")} \
        == by_bucket
    assert tallied._sum.get() == pytest.approx(sum(observations))
    tally.flush()  # a second flush adds nothing
    assert counter._value.get() == len(observations)


def test_a_tally_loses_no_count_of_many_threads_while_it_flushes():
    counter = Counter("tally_threads_total", "t", registry=None)
    histogram = Histogram("tally_threads_seconds", "t", buckets=(0.001, 0.01), registry=None)
    tally, threads, each = Tally(), 8, 3000
    flushing = threading.Event()

    def serve() -> None:
        for index in range(each):
            tally.begin()
            tally.end(counter, histogram, 0.002 if index % 2 else 0.0)

    def flush_meanwhile() -> None:
        while not flushing.is_set():
            tally.flush()

    flusher = threading.Thread(target=flush_meanwhile)
    flusher.start()
    workers = [threading.Thread(target=serve) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    flushing.set()
    flusher.join()
    tally.flush()
    assert counter._value.get() == threads * each and tally.inflight == 0
    buckets = {s.labels["le"]: s.value for s in histogram.collect()[0].samples if s.name.endswith("_bucket")}
    assert buckets == {"0.001": threads * each / 2, "0.01": threads * each, "+Inf": threads * each}


def test_the_flusher_keeps_draining_after_a_write_fails(monkeypatch):
    class Failing:
        def inc(self, amount: float) -> None:
            raise OSError("disk full")

    monkeypatch.setattr(tally_module, "FLUSH_S", 0.01)
    counter = Counter("tally_after_failure_total", "t", registry=None)
    tally = Tally()
    tally.begin()
    tally.count(Failing())  # the flusher's first write raises
    tally.end(counter, Histogram("tally_after_failure_seconds", "t", registry=None), 0.0)
    deadline = time.monotonic() + 60
    while counter._value.get() < 1 and time.monotonic() < deadline:
        tally.count(counter)  # counted by a later flush of the same thread
        time.sleep(0.02)
    assert counter._value.get() >= 1


def test_requests_are_counted_by_surface_status_model_and_version(dense_app):
    client = dense_app.test_client()
    before = scrape(client)
    assert client.post("/predict", json=rows(1)).status_code == 200
    assert client.post("/predict", json=rows(2)).status_code == 200
    assert client.post("/v1/models/dense:predict", json=rows(1)).status_code == 200
    assert client.post("/v2/models/dense/infer", json={"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}).status_code in (200, 400)
    assert client.post("/predict", json={"model": "nope", "instances": [[0, 0, 0, 0]]}).status_code == 404
    assert client.get("/models").status_code == 200  # not an inference request: not counted
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("keras_serve_requests_total", protocol="native", code="200", model="dense", version="1") == 2
    assert grew("keras_serve_requests_total", protocol="tfserving", code="200", model="dense", version="1") == 1
    assert grew("keras_serve_requests_total", protocol="native", code="404", model="", version="") == 1
    assert grew("keras_serve_request_duration_seconds_count", protocol="native", model="dense", version="1") == 2
    assert grew("keras_serve_batch_rows_sum", model="dense", version="1") >= 4  # 1 + 2 + 1 (+ the V2 row)
    assert grew("keras_serve_inference_duration_seconds_count", model="dense", version="1") >= 3
    assert grew("keras_serve_queue_duration_seconds_count", model="dense", version="1") >= 3
    assert value(after, "keras_serve_inflight_requests") == 0
    assert value(after, "keras_serve_model_state", model="dense", version="1", state="AVAILABLE") == 1
    assert value(after, "keras_serve_model_state", model="dense", version="1", state="LOADING") == 0
    assert value(after, "keras_serve_model_load_duration_seconds_count", model="dense", version="1") >= 1


def test_refusals_are_counted_by_reason(dense_app):
    client = dense_app.test_client()
    before = scrape(client)
    assert client.post("/predict", json=rows(9)).status_code == 413  # MAX_REQUEST_ROWS is 8
    assert client.post("/v1/models/dense:predict", json=rows(9)).status_code == 400  # too_many_rows on /v1
    assert client.post("/predict", json=rows(1)).status_code == 200
    after = scrape(client)
    grew = (value(after, "keras_serve_rejected_requests_total", reason="too_large", model="dense", version="1")
            - value(before, "keras_serve_rejected_requests_total", reason="too_large", model="dense", version="1"))
    assert grew == 2


def test_every_request_of_a_batcher_is_observed_once_in_its_queue_histogram():
    histogram = metrics.queue_histogram("queue-model", 7)
    before = sum(bucket.get() for bucket in histogram._buckets)
    batcher = Batcher(lambda arrays: arrays, BatchingSettings(max_batch_size=8, max_batch_delay_ms=1.0,
                                                              max_queue_rows=64, request_timeout=10.0),
                      name="queue-model", version=7)
    try:
        for _ in range(3):
            assert batcher.submit({"x": np.zeros((1, 2))}, 1)["x"].shape == (1, 2)
    finally:
        batcher.close()
    TALLY.flush()
    assert sum(bucket.get() for bucket in histogram._buckets) == before + 3


def test_an_access_line_names_the_request_id_the_client_sent(dense_app, capsys):
    client = dense_app.test_client()
    capsys.readouterr()
    assert client.post("/predict", json=rows(3), headers={"X-Request-ID": "client-id-17"}).status_code == 200
    line = next(line for line in capsys.readouterr().out.splitlines() if "client-id-17" in line)
    assert "app.access" in line and "status=200" in line and "model=dense" in line and "rows=3" in line
    assert re.search(r"duration_ms=\d", line) and "queue_ms=" in line and "bytes_out=" in line


def test_metrics_off_serves_no_metrics_route(tmp_path):
    application = create_app({"MODEL_DIR": tmp_path, "METRICS": False})
    try:
        assert application.test_client().get("/metrics").status_code == 404
    finally:
        metrics.enabled = True  # the module switch the next batchers read


def test_a_json_record_carries_time_level_logger_message_and_extra_fields():
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "POST %s %s", ("/predict", 200), None)
    record.request_id, record.rows = "abc", 3
    line = json.loads(json_formatter().format(record))
    assert line["level"] == "INFO" and line["logger"] == "app.access" and line["message"] == "POST /predict 200"
    assert line["request_id"] == "abc" and line["rows"] == 3 and re.match(r"\d{4}-\d\d-\d\dT", line["time"])


def test_raw_stderr_lines_become_json_objects_with_their_level():
    formatter = json_formatter()
    assert level_of("I0000 00:00:1796305768.456005   21758 port.cc:153] oneDNN custom operations") == logging.INFO
    assert level_of("W0000 00:00:17 x.cc:1] careful") == logging.WARNING
    assert level_of("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") == logging.INFO
    assert level_of("E0000 00:00:17 x.cc:1] broken") == logging.ERROR
    assert level_of("Traceback (most recent call last):") == logging.WARNING
    carried = json.loads(as_json("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", formatter))
    assert carried["logger"] == "stderr" and carried["level"] == "INFO" and carried["pid"] is None
    already = '{"level": "INFO", "message": "kept"}'
    assert as_json(already, formatter) == already


def metric_names() -> set[str]:
    """Every sample name the server exposes (its own metrics, and the process metrics)."""
    names = {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
             "process_open_fds", "process_max_fds", "process_start_time_seconds"}
    for collector in (metrics.REQUESTS, metrics.REQUEST_SECONDS, metrics.QUEUE_SECONDS, metrics.INFERENCE_SECONDS,
                      metrics.BATCH_ROWS, metrics.REJECTED, metrics.INFLIGHT, metrics.MODEL_STATE,
                      metrics.LOAD_SECONDS):
        for family in collector.describe():
            names.add(family.name)
            names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum"))
    return names


def referenced_metrics(expression: str) -> set[str]:
    return set(re.findall(r"\b(?:keras_serve|process)_[a-z_]+", expression))


def test_the_alert_rules_parse_and_name_only_metrics_the_server_exposes():
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"KerasServeHighErrorRatio", "KerasServeHighP99Latency", "KerasServeNotReady",
            "KerasServeShedding"} <= {rule["alert"] for rule in alerts}
    for rule in alerts:
        assert rule["expr"] and rule["labels"]["severity"] and rule["annotations"]["summary"]
        assert referenced_metrics(rule["expr"]) and referenced_metrics(rule["expr"]) <= metric_names(), rule["alert"]


def test_the_grafana_dashboard_parses_and_names_only_metrics_the_server_exposes():
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(expressions) >= 8
    for expression in expressions:
        assert referenced_metrics(expression) and referenced_metrics(expression) <= metric_names(), expression
    assert set(metric_names()) & {name for e in expressions for name in referenced_metrics(e)} >= {
        "keras_serve_requests_total", "keras_serve_request_duration_seconds_bucket",
        "keras_serve_rejected_requests_total", "keras_serve_inflight_requests", "keras_serve_model_state"}


def test_the_registry_of_one_process_is_served_without_multiprocess_files(dense_app):
    assert dense_app.test_client().get("/metrics").status_code == 200
    assert REGISTRY.get_sample_value("keras_serve_inflight_requests") == 0
