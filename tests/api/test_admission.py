"""Admission control: inference requests that waited too long for a thread get 429 before Flask."""
from __future__ import annotations

import pytest

from app.queue_wait import set_queue_wait

ROW = [[1.0, 2.0, 3.0, 4.0]]


@pytest.fixture
def waited():
    """Pretend the next request waited this long for a thread (the test client runs the app in this thread)."""
    yield set_queue_wait
    set_queue_wait(None)


@pytest.fixture
def shedder(app):
    return app.extensions["load_shedder"]


def predict(client):
    return client.post("/predict", json={"model": "dense", "instances": ROW}, headers={"X-Request-ID": "r-1"})


def test_a_request_that_waited_past_the_limit_gets_429_overloaded_with_retry_after(client, waited, shedder):
    before = shedder.shed
    waited(0.2)
    response = predict(client)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1" and response.headers["X-Request-ID"] == "r-1"
    error = response.json["error"]
    assert error["code"] == "overloaded"
    assert error["details"] == {"queue_wait_ms": 200.0, "max_queue_wait_ms": 50.0}
    assert shedder.shed == before + 1
    assert client.get("/models").json["admission"] == {"max_queue_wait_ms": 50.0, "shed_requests": before + 1}


def test_a_request_within_the_limit_or_without_a_measured_wait_runs(client, waited):
    waited(0.02)
    assert predict(client).status_code == 200
    waited(None)
    assert predict(client).status_code == 200


def test_protocol_surfaces_shed_with_their_own_error_shape(client, waited):
    waited(0.2)
    tfs = client.post("/v1/models/dense:predict", json={"instances": ROW})
    v2 = client.post("/v2/models/dense/versions/1/infer", json={"inputs": [
        {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ROW[0]}]})
    assert (tfs.status_code, v2.status_code) == (429, 429)
    assert "waited 200 ms" in tfs.json["error"] and "waited 200 ms" in v2.json["error"]
    assert len(tfs.headers["X-Request-ID"]) == 32


def test_health_metadata_and_unknown_routes_are_never_shed(client, waited):
    waited(5.0)
    assert client.get("/health").status_code == 200
    assert client.get("/models/dense").status_code == 200
    assert client.get("/v2/health/live").status_code == 200
    assert client.post("/v2/repository/index").status_code == 200
    assert client.post("/nowhere").status_code == 404


def test_zero_disables_shedding(app, waited):
    saved = app.config["MAX_QUEUE_WAIT_MS"]
    app.config["MAX_QUEUE_WAIT_MS"] = 0
    try:
        waited(10.0)
        assert predict(app.test_client()).status_code == 200
    finally:
        app.config["MAX_QUEUE_WAIT_MS"] = saved


def test_nothing_is_shed_while_the_worker_is_still_loading(client, waited, shedder):
    """Loading holds the GIL for long stretches: that is not overload."""
    settled_check = shedder.loading
    shedder.loading = lambda: True
    try:
        waited(0.2)
        assert predict(client).status_code == 200
    finally:
        shedder.loading = settled_check
    assert shedder.loading() is False  # the test app has settled, so the tests above do shed
