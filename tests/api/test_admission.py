"""Admission control: inference requests that waited too long for a thread get 429 before any work."""
from __future__ import annotations

import pytest

from app.queue_wait import set_queue_wait

ROW = [[1.0, 2.0, 3.0, 4.0]]


@pytest.fixture
def waited():
    """Pretend the next request waited this long for a worker thread (the test client runs in this thread)."""
    yield set_queue_wait
    set_queue_wait(None)


def test_a_request_that_waited_past_the_limit_gets_429_overloaded_with_retry_after(client, waited):
    waited(0.2)
    response = client.post("/predict", json={"model": "dense", "instances": ROW})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    error = response.json["error"]
    assert error["code"] == "overloaded"
    assert error["details"] == {"queue_wait_ms": 200.0, "max_queue_wait_ms": 50.0}


def test_protocol_surfaces_shed_with_their_own_error_shape(client, waited):
    waited(0.2)
    tfs = client.post("/v1/models/dense:predict", json={"instances": ROW})
    v2 = client.post("/v2/models/dense/infer", json={"inputs": [
        {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ROW[0]}]})
    assert (tfs.status_code, v2.status_code) == (429, 429)
    assert "waited 200 ms" in tfs.json["error"] and "waited 200 ms" in v2.json["error"]


def test_health_and_metadata_are_never_shed(client, waited):
    waited(5.0)
    assert client.get("/health").status_code == 200
    assert client.get("/models/dense").status_code == 200
    assert client.get("/v2/health/live").status_code == 200


def test_a_request_within_the_limit_or_without_a_known_wait_runs(client, waited):
    waited(0.01)
    assert client.post("/predict", json={"model": "dense", "instances": ROW}).status_code == 200
    waited(None)
    assert client.post("/predict", json={"model": "dense", "instances": ROW}).status_code == 200


def test_zero_disables_shedding(app, waited):
    app.config["MAX_QUEUE_WAIT_MS"] = 0
    try:
        waited(10.0)
        assert app.test_client().post("/predict", json={"model": "dense", "instances": ROW}).status_code == 200
    finally:
        app.config["MAX_QUEUE_WAIT_MS"] = 50.0
