"""The dynamic batcher with a fake model (plain numpy, no TensorFlow): deterministic via a gate."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from app import errors
from app.serving.batching import Batcher
from app.serving.types import BatchingSettings

POISON = -1.0


class GatedModel:
    """y = 10 * x; waits on `gate` while it is closed; fails on a batch holding POISON."""

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []
        self.threads: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.calls.append(x.copy())
        self.threads.append(threading.get_ident())
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        if (x == POISON).any():
            raise ValueError("poisoned batch")
        return {"y": x * 10.0, "rows": np.arange(len(x))}


def settings(**overrides: float) -> BatchingSettings:
    values = {"max_batch_size": 64, "max_batch_delay_ms": 2.0, "max_queue_rows": 1024, "request_timeout": 30.0}
    values.update(overrides)
    return BatchingSettings(**values)


def rows_of(value: float, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 3), value, dtype=np.float32)}


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


class Client(threading.Thread):
    """Submits one request on its own thread and keeps the answer or the error."""

    def __init__(self, batcher: Batcher, value: float, rows: int = 1):
        super().__init__(daemon=True)
        self.batcher, self.value, self.rows = batcher, value, rows
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.batcher.submit(rows_of(self.value, self.rows), self.rows)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            self.error = exc


@pytest.fixture
def model() -> GatedModel:
    return GatedModel()


def block(batcher: Batcher, model: GatedModel) -> Client:
    """Occupy the model with one request held at the gate; later requests queue behind it."""
    model.gate.clear()
    model.entered.clear()
    blocker = Client(batcher, 0.5)
    assert model.entered.wait(5)
    return blocker


def queue_up(batcher: Batcher, values: list[float], rows: int = 1) -> list[Client]:
    """Queue one request per value, in this order."""
    clients = []
    for value in values:
        clients.append(Client(batcher, value, rows))
        wait_until(lambda n=len(clients): batcher.stats()["queued_requests"] == n)
    return clients


def finish(clients: list[Client]) -> None:
    for client in clients:
        client.join(10)
        assert not client.is_alive(), "a request was left hanging"


def test_concurrent_requests_share_one_pass_in_order(model: GatedModel) -> None:
    batcher = Batcher(model, settings())
    blocker = block(batcher, model)
    clients = queue_up(batcher, [1, 2, 3, 4, 5], rows=2)
    model.gate.set()
    finish([blocker, *clients])
    assert len(model.calls) == 2  # the blocker, then one pass for all five
    assert model.calls[1][:, 0].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    for client in clients:
        assert client.error is None
        np.testing.assert_array_equal(client.result["y"], np.full((2, 3), client.value * 10))
        assert client.result["y"].shape == (2, 3)
    stats = batcher.stats()
    assert stats["batches"] == 2 and stats["requests"] == 6 and stats["rows"] == 11
    assert stats["batch_requests"] == {"1": 1, "5": 1}
    batcher.close()


def test_batches_stop_at_max_batch_size_rows(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_batch_size=4))
    blocker = block(batcher, model)
    clients = queue_up(batcher, [1, 2, 3, 4, 5, 6], rows=2)
    model.gate.set()
    finish([blocker, *clients])
    assert [len(call) for call in model.calls] == [1, 4, 4, 4]
    assert all(c.error is None and (c.result["y"] == c.value * 10).all() for c in clients)
    batcher.close()


def test_oversized_request_is_split_and_reassembled(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_batch_size=4))
    inputs = {"x": np.arange(30, dtype=np.float32).reshape(10, 3)}
    out = batcher.submit(inputs, 10)
    assert [len(call) for call in model.calls] == [4, 4, 2]
    np.testing.assert_array_equal(out["y"], inputs["x"] * 10)
    assert out["rows"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    batcher.close()


def test_an_error_reaches_every_request_of_its_batch_and_no_other(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_batch_size=2))
    blocker = block(batcher, model)
    clients = queue_up(batcher, [POISON, 1, 2, 3])
    model.gate.set()
    finish([blocker, *clients])
    failed, fine = clients[:2], clients[2:]
    assert all(isinstance(c.error, errors.InternalError) for c in failed)
    assert failed[0].error is not failed[1].error  # each request thread raises its own instance
    assert "ValueError" in failed[0].error.message
    assert all(c.error is None and (c.result["y"] == c.value * 10).all() for c in fine)
    assert batcher.stats()["errors"] == 2
    batcher.close()


def test_a_serving_error_from_the_model_keeps_its_type(model: GatedModel) -> None:
    def refuse(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise errors.InputMismatch("nope", code="shape_mismatch")

    batcher = Batcher(refuse, settings())
    with pytest.raises(errors.InputMismatch, match="nope"):
        batcher.submit(rows_of(1), 1)
    batcher.close()


def test_a_request_not_run_by_its_deadline_gets_504_and_never_runs(model: GatedModel) -> None:
    batcher = Batcher(model, settings(request_timeout=0.05))
    blocker = block(batcher, model)
    late = Client(batcher, 7)
    late.join(5)
    assert isinstance(late.error, errors.DeadlineExceeded) and late.error.status == 504
    assert batcher.stats()["queued_requests"] == 0 and batcher.stats()["rejected"]["deadline_exceeded"] == 1
    model.gate.set()
    finish([blocker])
    assert all((call != 7).all() for call in model.calls)
    assert batcher.submit(rows_of(3), 1)["y"][0, 0] == 30  # the batcher still works
    batcher.close()


def test_a_zero_timeout_disables_the_deadline(model: GatedModel) -> None:
    batcher = Batcher(model, settings(request_timeout=0))
    blocker = block(batcher, model)
    waiting = Client(batcher, 2)
    time.sleep(0.1)
    assert waiting.is_alive()
    model.gate.set()
    finish([blocker, waiting])
    assert waiting.error is None
    batcher.close()


def test_a_full_queue_answers_overloaded_at_once(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_queue_rows=4))
    blocker = block(batcher, model)
    queued = queue_up(batcher, [1, 2], rows=2)
    started = time.monotonic()
    with pytest.raises(errors.Overloaded) as caught:
        batcher.submit(rows_of(9), 1)
    assert time.monotonic() - started < 0.5
    assert caught.value.status == 429 and caught.value.code == "overloaded" and caught.value.retry_after >= 1
    assert batcher.stats()["rejected"]["overloaded"] == 1
    model.gate.set()
    finish([blocker, *queued])
    assert all(c.error is None for c in queued)
    batcher.close()


def test_a_request_larger_than_the_queue_is_admitted_when_the_queue_is_empty(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_queue_rows=4, max_batch_size=4))
    blocker = block(batcher, model)
    big = Client(batcher, 3, rows=10)
    wait_until(lambda: batcher.stats()["queued_rows"] == 10)
    model.gate.set()
    finish([blocker, big])
    assert big.error is None and big.result["y"].shape == (10, 3)
    batcher.close()


def test_close_runs_every_queued_request(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_batch_size=2))
    blocker = block(batcher, model)
    clients = queue_up(batcher, [1, 2, 3, 4, 5])
    closer = threading.Thread(target=batcher.close)
    closer.start()
    wait_until(lambda: batcher._closed)
    with pytest.raises(errors.ModelNotAvailable):
        batcher.submit(rows_of(1), 1)
    model.gate.set()
    closer.join(10)
    finish([blocker, *clients])
    assert all(c.error is None and (c.result["y"] == c.value * 10).all() for c in clients)


def test_close_fails_what_a_stuck_model_never_reached(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_batch_size=1))
    blocker = block(batcher, model)
    clients = queue_up(batcher, [1, 2, 3])
    batcher.close(timeout=0.1)
    for client in clients:
        client.join(5)
        assert isinstance(client.error, errors.ModelNotAvailable)
    model.gate.set()
    finish([blocker])
    assert batcher.stats()["queued_requests"] == 0


def test_a_single_client_runs_on_its_own_thread_without_waiting(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_batch_delay_ms=500))
    started = time.perf_counter()
    for value in range(20):
        assert batcher.submit(rows_of(value), 1)["y"][0, 0] == value * 10
    assert time.perf_counter() - started < 0.5  # 20 requests, none held for the 500 ms delay
    assert set(model.threads) == {threading.get_ident()}
    stats = batcher.stats()
    assert stats["inline_batches"] == 20 and stats["queue_ms"]["p99_recent"] == 0.0
    batcher.close()


def test_after_a_burst_a_lone_request_waits_at_most_the_delay(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_batch_delay_ms=30))
    blocker = block(batcher, model)
    clients = queue_up(batcher, [1, 2, 3])
    model.gate.set()
    finish([blocker, *clients])
    started = time.perf_counter()
    batcher.submit(rows_of(1), 1)  # recent concurrency: the batcher holds it for company
    assert time.perf_counter() - started < 0.5
    for _ in range(60):  # the concurrency estimate decays: back to running at once
        batcher.submit(rows_of(1), 1)
    started = time.perf_counter()
    batcher.submit(rows_of(1), 1)
    assert time.perf_counter() - started < 0.02
    batcher.close()


def test_counters_are_json_ready(model: GatedModel) -> None:
    import json

    batcher = Batcher(model, settings(max_batch_size=4))
    batcher.submit(rows_of(1, 3), 3)
    batcher.submit(rows_of(1, 9), 9)
    stats = json.loads(json.dumps(batcher.stats()))
    assert stats["requests"] == 2 and stats["rows"] == 12 and stats["batches"] == 2
    assert sum(b["count"] for b in stats["batch_rows_histogram"]) == 2
    assert sum(b["count"] for b in stats["queue_ms"]["histogram"]) == stats["queue_ms"]["count"] == 2
    assert {"overloaded", "deadline_exceeded"} <= set(stats["rejected"]) and stats["errors"] == 0
    batcher.close()


def test_without_shared_calls_each_request_runs_on_its_own_thread_beside_a_busy_one(model: GatedModel) -> None:
    batcher = Batcher(model, settings(), share_calls=False)
    blocker = block(batcher, model)
    model.entered.clear()
    second = Client(batcher, 2.0, rows=3)
    assert model.entered.wait(5), "the second request waited for the first instead of running"
    assert batcher.stats()["queued_requests"] == 0
    model.gate.set()
    finish([blocker, second])
    np.testing.assert_array_equal(second.result["y"], np.full((3, 3), 20.0))
    assert set(model.threads) == {blocker.ident, second.ident}
    stats = batcher.stats()
    assert stats["batches"] == 2 and stats["inline_batches"] == 2 and stats["requests"] == 2
    batcher.close()


def test_an_inline_request_is_counted_as_a_batch_of_one_that_did_not_wait():
    from app.serving.batch_stats import BatchStats

    inline, batch = BatchStats(), BatchStats()
    for rows in (1, 3, 32, 300):
        inline.record_inline(rows)
        batch.record_batch((0.0,), rows, inline=True)
    assert inline.snapshot() == batch.snapshot()
