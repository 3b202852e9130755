"""Explanations in their own metrics (keras_serve_explain_*, by surface and method) and in the access line,
never in the prediction metrics."""
from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from tests import model_builders as mb

ROWS = np.zeros((2, 4)).tolist()


@pytest.fixture(scope="module")
def explain_app(tmp_path_factory):
    """An app serving `dense` (version 1), metrics and text access lines on."""
    folder = tmp_path_factory.mktemp("explain-metrics-models")
    mb.dense(folder / "dense.keras")
    application = create_app({"MODEL_DIR": folder, "ACCESS_LOG": True})
    assert application.extensions["registry"].wait_until_settled(120)
    yield application
    application.extensions["registry"].close()


def scrape(client) -> dict[tuple[str, tuple], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.get_data(as_text=True)) for s in family.samples}


def grown(before: dict, after: dict, name: str, **labels: str) -> float:
    """How much the samples named `name` whose labels include `labels` grew."""
    def summed(samples: dict) -> float:
        return sum(v for (n, found), v in samples.items() if n == name and labels.items() <= dict(found).items())
    return summed(after) - summed(before)


def test_explanations_are_counted_by_surface_method_and_code_outside_the_prediction_metrics(explain_app):
    client = explain_app.test_client()
    before = scrape(client)
    assert client.post("/explain", json={"instances": ROWS, "method": "saliency"}).status_code == 200
    assert client.post("/explain", json={"instances": ROWS}).status_code == 200  # integrated_gradients
    assert client.post("/v1/models/dense:explain", json={"instances": ROWS, "parameters": {
        "method": "gradient_x_input"}}).status_code == 200
    assert client.post("/explain", json={"model": "nope", "instances": ROWS}).status_code == 404
    after = scrape(client)
    model = {"model": "dense", "version": "1"}
    assert grown(before, after, "keras_serve_explain_requests_total", protocol="native", method="saliency",
                 code="200", **model) == 1
    assert grown(before, after, "keras_serve_explain_requests_total", protocol="native",
                 method="integrated_gradients", code="200", **model) == 1
    assert grown(before, after, "keras_serve_explain_requests_total", protocol="tfserving",
                 method="gradient_x_input", code="200", **model) == 1
    assert grown(before, after, "keras_serve_explain_requests_total", protocol="native", code="404", model="") == 1
    assert grown(before, after, "keras_serve_explain_duration_seconds_count", **model) == 3
    assert grown(before, after, "keras_serve_explain_duration_seconds_sum", **model) > 0
    assert grown(before, after, "keras_serve_requests_total") == 0
    assert grown(before, after, "keras_serve_request_duration_seconds_count") == 0


def test_an_explain_access_line_names_its_protocol_and_method(explain_app, caplog):
    client = explain_app.test_client()
    assert client.post("/v1/models/dense:explain", json={"instances": ROWS, "parameters": {
        "method": "saliency"}}).status_code == 200
    assert client.post("/predict", json={"instances": ROWS}).status_code == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "app.access"]
    explained = next(line for line in lines if "path=/v1/models/dense:explain" in line)
    assert "protocol=tfserving" in explained and "explain_method=saliency" in explained and "status=200" in explained
    predicted = next(line for line in lines if "path=/predict" in line)
    assert "protocol=native" in predicted and "explain_method" not in predicted
