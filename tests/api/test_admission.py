"""Admission control: inference requests that met a long queue for a thread get 429 before any work."""
from __future__ import annotations

import pytest

from app.queue_wait import QueueState, set_queue_state

ROW = [[1.0, 2.0, 3.0, 4.0]]


@pytest.fixture
def met():
    """Pretend the next request met this queue (the test client runs the app in this thread)."""
    def meet(waited: float | None = None, ahead: int = 0) -> None:
        set_queue_state(None if waited is None else QueueState(waited=waited, ahead=ahead))
    yield meet
    set_queue_state(None)


@pytest.fixture
def limits(app):
    saved = dict(app.config)
    yield app.config
    app.config.clear()
    app.config.update(saved)


def predict(client):
    return client.post("/predict", json={"model": "dense", "instances": ROW})


def test_a_request_with_max_queue_rows_waiting_behind_it_gets_429_with_retry_after(client, met, limits):
    limits["MAX_QUEUE_ROWS"] = 64
    met(0.001, ahead=64)
    response = predict(client)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    error = response.json["error"]
    assert error["code"] == "overloaded"
    assert error["details"] == {"waiting_requests": 64, "max_queue_rows": 64}
    met(0.001, ahead=63)
    assert predict(client).status_code == 200


def test_a_request_that_waited_past_max_queue_wait_ms_gets_429(client, met, limits):
    limits["MAX_QUEUE_WAIT_MS"] = 50.0
    met(0.2)
    response = predict(client)
    assert response.status_code == 429
    assert response.json["error"]["details"] == {"queue_wait_ms": 200.0, "max_queue_wait_ms": 50.0}
    met(0.01)
    assert predict(client).status_code == 200


def test_no_time_limit_by_default(client, met):
    met(10.0)
    assert predict(client).status_code == 200


def test_protocol_surfaces_shed_with_their_own_error_shape(client, met, limits):
    limits["MAX_QUEUE_WAIT_MS"] = 50.0
    met(0.2)
    tfs = client.post("/v1/models/dense:predict", json={"instances": ROW})
    v2 = client.post("/v2/models/dense/infer", json={"inputs": [
        {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ROW[0]}]})
    assert (tfs.status_code, v2.status_code) == (429, 429)
    assert "waited 200 ms" in tfs.json["error"] and "waited 200 ms" in v2.json["error"]


def test_health_and_metadata_are_never_shed(client, met, limits):
    limits["MAX_QUEUE_WAIT_MS"] = 50.0
    met(5.0, ahead=10_000)
    assert client.get("/health").status_code == 200
    assert client.get("/models/dense").status_code == 200
    assert client.get("/v2/health/live").status_code == 200


def test_without_a_measured_queue_requests_run(client, met, limits):
    limits["MAX_QUEUE_WAIT_MS"] = 50.0
    met(None)
    assert predict(client).status_code == 200
