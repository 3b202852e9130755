"""End to end: many concurrent requests under real gunicorn each get the answer for their own input."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest
import requests

from tests.support import running_server

pytestmark = pytest.mark.e2e

REQUESTS = 200
CLIENTS = 32


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(model_repo):
    rng = np.random.default_rng(3)
    inputs = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(REQUESTS)]
    model = keras.saving.load_model(model_repo / "dense.keras", compile=False)
    expected = [np.asarray(model(x, training=False)) for x in inputs]
    local = threading.local()
    barrier = threading.Barrier(CLIENTS)

    def call(index: int) -> tuple[int, int, list]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            barrier.wait(30)  # start together so requests overlap
        response = local.session.post(f"{base}/predict", timeout=30,
                                      json={"model": "dense", "instances": inputs[index].tolist()})
        return index, response.status_code, response.json().get("predictions")

    # The TensorFlow function: a TFLite call is too cheap to share, so it never batches.
    # No load shedding: a 32-client burst on a busy machine may wait past the 50 ms default.
    env = {"SERVING_STRICT_READINESS": "false", "SERVING_MAX_BATCH_DELAY_MS": "5", "SERVING_RUNTIME": "tf",
           "SERVING_MAX_QUEUE_WAIT_MS": "0"}
    with running_server(model_repo, env) as base:
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(call, range(REQUESTS)))
        versions = [requests.get(f"{base}/models/dense", timeout=10).json()["versions"][0] for _ in range(10)]
    # A worker that took no request may still be loading under a busy machine: it has no counters yet.
    workers_stats = [v["stats"] for v in versions if "stats" in v]

    for index, status, predictions in answers:
        assert status == 200, (index, predictions)
        np.testing.assert_allclose(np.asarray(predictions), expected[index], atol=1e-5)
    shared = [s for s in workers_stats if any(int(n) > 1 for n in s["batch_requests"])]
    assert shared, f"no batch held more than one request: {[s['batch_requests'] for s in workers_stats]}"
    stats = shared[0]
    assert stats["rows"] >= stats["requests"] and stats["errors"] == 0
    assert stats["rejected"] == {"overloaded": 0, "deadline_exceeded": 0}
