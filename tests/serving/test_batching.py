"""The dynamic batcher with a fake model (plain numpy, no TensorFlow): deterministic via events and counters."""
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
HANG = -2.0


class GatedModel:
    """y = 10 * x; waits on `gate` while it is closed; fails on a batch holding POISON;
    a batch holding HANG sets `hung` and hangs until `release` is set."""

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []
        self.threads: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.hung = threading.Event()
        self.release = threading.Event()
        self.returned = 0  # forward passes that have returned (or raised)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.calls.append(x.copy())
        self.threads.append(threading.get_ident())
        self.entered.set()
        try:
            self._wait(x)
        finally:
            self.returned += 1
        return {"y": x * 10.0, "rows": np.arange(len(x))}

    def _wait(self, x: np.ndarray) -> None:
        assert self.gate.wait(10), "test gate never opened"
        if (x == HANG).any():
            self.hung.set()
            assert self.release.wait(10), "the hung pass was never released"
        if (x == POISON).any():
            raise ValueError("poisoned batch")


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
    with pytest.raises(errors.Overloaded) as caught:  # raised while the blocker still holds the model: at once
        batcher.submit(rows_of(9), 1)
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
    for value in range(20):
        assert batcher.submit(rows_of(value), 1)["y"][0, 0] == value * 10
    assert batcher.stats()["inline_batches"] == 20  # none was queued to wait for the 500 ms delay
    assert set(model.threads) == {threading.get_ident()}
    stats = batcher.stats()
    assert stats["inline_batches"] == 20 and stats["queue_ms"]["p99_recent"] == 0.0
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


# -- deadlines after a request was taken, and a pass that does not return ---------------------------

def test_a_request_in_a_hung_pass_answers_504_at_its_deadline_and_its_thread_returns(model: GatedModel) -> None:
    batcher = Batcher(model, settings(request_timeout=1.0))
    blocker = block(batcher, model)
    clients = queue_up(batcher, [HANG, 1])
    model.gate.set()  # the blocker returns; the worker takes both into one pass, which hangs
    assert model.hung.wait(5)
    finish(clients)  # each thread returns while the pass is still inside the model
    assert not model.release.is_set() and model.returned == 1  # only the blocker's pass returned
    for client in clients:
        assert isinstance(client.error, errors.DeadlineExceeded) and client.error.status == 504
        assert client.error.details["reason"] == "taken"
    assert batcher.stats()["rejected"]["deadline_exceeded"] == 2
    model.release.set()  # the pass returns late: its answers are dropped, the batcher works again
    wait_until(lambda: model.returned == 2)
    assert batcher.submit(rows_of(3), 1)["y"][0, 0] == 30
    finish([blocker])
    assert batcher.stats()["rejected"]["deadline_exceeded"] == 2
    batcher.close()


def test_while_an_inline_pass_is_overdue_new_requests_answer_504_at_once_instead_of_queueing(
        model: GatedModel) -> None:
    batcher = Batcher(model, settings(request_timeout=0.2))
    blocker = block(batcher, model)  # inline on its own thread: nothing can interrupt it
    queued = Client(batcher, 2)  # finds the pass running: queues, and expires at its deadline
    finish([queued])
    assert queued.error.details["reason"] == "queued"
    time.sleep(0.05)  # safely past T since the queued request first found the pass running
    with pytest.raises(errors.DeadlineExceeded) as refused:
        batcher.submit(rows_of(3), 1)
    assert refused.value.details["reason"] == "stalled" and refused.value.details["stalled_seconds"] >= 0.2
    assert batcher.stats()["queued_requests"] == 0
    model.gate.set()
    finish([blocker])
    assert blocker.error is None and len(model.calls) == 1  # neither later request reached the model
    assert batcher.submit(rows_of(4), 1)["y"][0, 0] == 40  # a pass finished: requests run again
    assert batcher.stats()["rejected"]["deadline_exceeded"] == 2
    batcher.close()


def test_a_zero_timeout_never_refuses_a_request_behind_a_long_pass(model: GatedModel) -> None:
    batcher = Batcher(model, settings(request_timeout=0))
    blocker = block(batcher, model)
    first = Client(batcher, 2)
    wait_until(lambda: batcher.stats()["queued_requests"] == 1)
    time.sleep(0.1)
    second = Client(batcher, 3)
    wait_until(lambda: batcher.stats()["queued_requests"] == 2)
    model.gate.set()
    finish([blocker, first, second])
    assert first.error is None and second.error is None
    assert batcher.stats()["rejected"]["deadline_exceeded"] == 0
    batcher.close()


def test_close_answers_the_requests_of_a_pass_that_never_returns(model: GatedModel) -> None:
    batcher = Batcher(model, settings(request_timeout=0))  # no deadline: only close() answers them
    blocker = block(batcher, model)
    clients = queue_up(batcher, [HANG, 1])
    model.gate.set()
    assert model.hung.wait(5)
    batcher.close(timeout=0.1)
    finish([blocker, *clients])
    assert all(isinstance(c.error, errors.ModelNotAvailable) for c in clients)
    model.release.set()


# -- queue expiry -------------------------------------------------------------------------------------

class Due:
    """A queue entry whose deadline reads are counted."""

    reads = 0

    def __init__(self, deadline: float):
        self._deadline = deadline

    @property
    def deadline(self) -> float:
        Due.reads += 1
        return self._deadline


def test_expiry_pops_due_requests_from_the_head_and_looks_no_further() -> None:
    from collections import deque

    from app.serving.batch_rows import pop_expired

    # Deadlines follow queue order; the out-of-order last entry shows nothing past the first live one is read.
    queue = deque([Due(1.0), Due(2.0), Due(3.0), Due(10.0), Due(0.0)])
    Due.reads = 0
    expired = list(pop_expired(queue, now=5.0))
    assert [entry.deadline for entry in expired] == [1.0, 2.0, 3.0]
    assert [entry._deadline for entry in queue] == [10.0, 0.0]
    assert Due.reads <= 2 * 4 + 3  # a few reads per entry looked at (3 due, 1 live), none of the rest


def test_many_queued_requests_behind_a_stuck_pass_each_expire_once(model: GatedModel) -> None:
    batcher = Batcher(model, settings(request_timeout=1.0, max_queue_rows=10_000))
    blocker = block(batcher, model)
    clients = [Client(batcher, 1) for _ in range(200)]
    finish(clients)
    assert all(isinstance(c.error, errors.DeadlineExceeded) for c in clients)
    # Each waited in the queue until its deadline, or came after T and was refused at once.
    assert {c.error.details["reason"] for c in clients} <= {"queued", "stalled"}
    stats = batcher.stats()
    assert stats["rejected"]["deadline_exceeded"] == 200
    assert stats["queued_requests"] == 0 and stats["queued_rows"] == 0
    model.gate.set()
    finish([blocker])
    assert len(model.calls) == 1
    batcher.close()


# -- the concurrency hint decays over time, not per arrival --------------------------------------------

def test_the_concurrency_hint_halves_per_half_life_whatever_the_number_of_arrivals() -> None:
    from app.serving.batch_stats import decayed_max

    level, at = 16.0, 0.0
    for _ in range(1000):  # a thousand lone arrivals at the same instant forget nothing
        level = decayed_max(level, at, 0.0, 1, 0.1)
    assert level == 16.0
    assert decayed_max(16.0, 0.0, 0.1, 1, 0.1) == pytest.approx(8.0)
    assert decayed_max(16.0, 0.0, 0.3, 1, 0.1) == pytest.approx(2.0)
    assert decayed_max(16.0, 0.0, 10.0, 1, 0.1) == 1.0  # never below the requests in flight now
    assert decayed_max(1.0, 0.0, 0.0, 5, 0.1) == 5.0


def burst(batcher: Batcher, model: GatedModel) -> None:
    """Four requests in flight at once, then all answered."""
    blocker = block(batcher, model)
    clients = queue_up(batcher, [1, 2, 3])
    model.gate.set()
    finish([blocker, *clients])


def test_after_a_burst_lone_requests_keep_waiting_for_company_until_time_passes(
        model: GatedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.serving import batching

    monkeypatch.setattr(batching, "HINT_HALF_LIFE_S", 3600.0)
    batcher = Batcher(model, settings(max_batch_delay_ms=1))
    burst(batcher, model)
    inline_before = batcher.stats()["inline_batches"]
    for value in range(30):  # per-arrival decay would have forgotten the burst by now
        assert batcher.submit(rows_of(value), 1)["y"][0, 0] == value * 10
    assert batcher.stats()["inline_batches"] == inline_before  # each went through the worker
    monkeypatch.setattr(batching, "HINT_HALF_LIFE_S", 0.01)
    time.sleep(0.3)  # thirty half-lives: the burst is forgotten
    batcher.submit(rows_of(1), 1)
    assert batcher.stats()["inline_batches"] == inline_before + 1
    assert model.threads[-1] == threading.get_ident()
    batcher.close()


# -- without shared calls: the same admission limit and stall rule ------------------------------------

def test_without_shared_calls_the_rows_running_at_once_are_limited(model: GatedModel) -> None:
    batcher = Batcher(model, settings(max_queue_rows=4), share_calls=False)
    model.gate.clear()
    running = [Client(batcher, 1, rows=2), Client(batcher, 2, rows=2)]
    wait_until(lambda: len(model.calls) == 2)
    with pytest.raises(errors.Overloaded) as caught:
        batcher.submit(rows_of(9), 1)
    assert caught.value.status == 429 and caught.value.retry_after >= 1
    assert batcher.stats()["rejected"]["overloaded"] == 1
    model.gate.set()
    finish(running)
    assert all(c.error is None for c in running) and len(model.calls) == 2
    assert batcher.submit(rows_of(3, 4), 4)["y"].shape == (4, 3)  # the rows were given back
    batcher.close()


def test_without_shared_calls_an_overdue_call_keeps_its_thread_but_draws_no_new_call_in(model: GatedModel) -> None:
    batcher = Batcher(model, settings(request_timeout=0.2), share_calls=False)
    model.gate.clear()
    first = Client(batcher, 1)
    wait_until(lambda: len(model.calls) == 1)
    second = Client(batcher, 2)  # finds a call running: starts the stall clock, and runs beside it
    wait_until(lambda: len(model.calls) == 2)
    time.sleep(0.3)  # past T with no call finishing
    with pytest.raises(errors.DeadlineExceeded) as refused:
        batcher.submit(rows_of(3), 1)
    assert refused.value.details["reason"] == "stalled" and len(model.calls) == 2
    assert first.is_alive() and second.is_alive()  # a call on the caller's thread is bounded by the pass alone
    model.gate.set()
    finish([first, second])
    assert first.error is None and second.error is None  # late, but answered: nothing interrupted them
    assert batcher.submit(rows_of(4), 1)["y"][0, 0] == 40
    batcher.close()
