"""Admission control: inference requests that waited too long for a thread get 429 before Flask."""
from __future__ import annotations

import pytest

from app.gunicorn.queue_wait import set_queue_wait
from app.settings import load_settings

ROW = [[1.0, 2.0, 3.0, 4.0]]


@pytest.fixture
def waited(app, monkeypatch):
    """Pretend the next request waited this long for a thread (the test client runs the app in this thread).

    The grace period is 0 here, so one wait over the limit is shed; the grace has its own tests below."""
    shedder = app.extensions["load_shedder"]
    monkeypatch.setattr(shedder, "settings", shedder.settings.model_copy(update={"queue_wait_grace_ms": 0.0}))
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
    assert client.get("/models").json["admission"] == {"max_queue_wait_ms": 50.0, "queue_wait_grace_ms": 0.0,
                                                       "shed_requests": before + 1}


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


def test_health_metadata_and_unknown_routes_are_never_shed(client, waited, management_headers):
    waited(5.0)
    assert client.get("/health").status_code == 200
    assert client.get("/models/dense").status_code == 200
    assert client.get("/v2/health/live").status_code == 200
    assert client.post("/v2/repository/index", headers=management_headers).status_code == 200
    assert client.post("/nowhere").status_code == 404


def test_zero_disables_shedding(app, waited, shedder, monkeypatch):
    monkeypatch.setattr(shedder, "settings", shedder.settings.model_copy(update={"max_queue_wait_ms": 0}))
    waited(10.0)
    assert predict(app.test_client()).status_code == 200


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


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def graced(app):
    """A fresh shedder (limit 50 ms, grace 25 ms) around a stub app, on a clock the test moves."""
    from werkzeug.test import EnvironBuilder

    from app.api.admission import LoadShedder

    clock = FakeClock()
    settings = load_settings({"MAX_QUEUE_WAIT_MS": 50.0, "QUEUE_WAIT_GRACE_MS": 25.0}, environ={})
    shedder = LoadShedder(lambda environ, start: (start("200 OK", []), [b"ok"])[1], app.url_map, settings,
                          loading=lambda: False, clock=clock)

    def status_after(wait_s: float, advance_ms: float = 0.0) -> int:
        clock.now += advance_ms / 1000.0
        set_queue_wait(wait_s)
        statuses: list[str] = []
        environ = EnvironBuilder(path="/predict", method="POST", json={"instances": ROW}).get_environ()
        shedder(environ, lambda status, headers, exc_info=None: statuses.append(status))
        return int(statuses[0].split()[0])

    yield status_after, shedder
    set_queue_wait(None)


def test_a_stall_shorter_than_the_grace_sheds_nothing(graced):
    status_after, shedder = graced
    assert [status_after(0.08), status_after(0.09, advance_ms=10), status_after(0.07, advance_ms=10)] == [200] * 3
    assert status_after(0.01, advance_ms=10) == 200  # a wait within the limit: the stall is over
    assert status_after(0.08, advance_ms=10) == 200  # a new stall starts its own grace
    assert shedder.shed == 0


def test_waits_over_the_limit_for_longer_than_the_grace_are_shed(graced):
    status_after, shedder = graced
    assert status_after(0.08) == 200
    assert status_after(0.08, advance_ms=20) == 200
    assert status_after(0.08, advance_ms=6) == 429  # 26 ms over the limit
    assert shedder.shed == 1


def test_within_a_second_of_a_429_shedding_resumes_without_a_new_grace(graced):
    status_after, _ = graced
    status_after(0.08)
    assert status_after(0.08, advance_ms=30) == 429
    assert status_after(0.01, advance_ms=1) == 200
    assert status_after(0.08, advance_ms=500) == 429  # still within a second of the last 429
    assert status_after(0.01, advance_ms=1) == 200
    assert status_after(0.08, advance_ms=1100) == 200  # calm for over a second: the grace applies again
