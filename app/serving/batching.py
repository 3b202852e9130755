"""Dynamic batching for one model version: queue, merge concurrent requests, run once, split.

Interface the rest of the server relies on:
- `Batcher(run, settings)`; `submit(inputs, rows) -> outputs` (blocking; raises ServingError);
- `stats() -> dict` (JSON-ready counters); `close()` (finish or fail every queued request).

Rule (README, "How dynamic batching works"): a request that finds the model idle, the queue empty
and no recent concurrency runs at once on its own thread (no hand-off, no delay). Otherwise
it queues; one worker thread takes the oldest, waits for more only while fewer requests
are queued than were recently in flight at once (never past `max_batch_delay_ms` after the
oldest, never beyond `max_batch_size` rows), concatenates, runs once and splits the rows.
With `share_calls=False` (a forward pass too cheap for sharing to pay for the hand-off)
every request runs on its own thread; the forward pass guards itself.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque

from app import errors
from app.serving.batch_rows import QUEUED, TAKEN, Pending, run_in_chunks, run_merged
from app.serving.batch_stats import BatchStats
from app.serving.types import Arrays, BatchingSettings, ForwardPass

log = logging.getLogger(__name__)

HINT_DECAY = 0.9  # per arrival: ~20 lone requests after a burst of 16, the batcher stops waiting for company
CLOSE_GRACE_S = 10.0  # how long close() lets the worker drain before failing what is left


class Batcher:
    """Merges concurrent requests to one model version into shared forward passes."""

    def __init__(self, run: ForwardPass, settings: BatchingSettings, *, name: str = "model", share_calls: bool = True):
        self._run = run
        self.settings = settings
        self.share_calls = share_calls
        self._delay = settings.max_batch_delay_ms / 1000.0
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Pending] = deque()
        self._queued_rows = 0
        self._busy = False          # a forward pass is running (worker or inline)
        self._closed = False
        self._worker_waiting = False
        self._inflight = 0          # requests inside submit(): queued or running
        self._level = 0.0           # decaying maximum of `_inflight` seen by arrivals
        self._stats = BatchStats()
        self._worker = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._worker.start()

    # -- callers ---------------------------------------------------------------
    def submit(self, inputs: Arrays, rows: int) -> Arrays:
        """Run one validated request (alone or merged with others) and return its own outputs."""
        with self._cond:
            if self._closed:
                raise errors.ModelNotAvailable("the model version is unloading", {"state": "UNLOADING"})
            self._inflight += 1
            direct = not self.share_calls  # runs on this thread, even beside another call
            if not direct:
                self._level = max(self._level * HINT_DECAY, float(self._inflight))
            inline = direct or (not self._busy and not self._queue and self._hint() <= 1)
            if inline and not direct:
                self._busy = True
            elif not inline:
                limit = self.settings.max_queue_rows
                if self._queued_rows and self._queued_rows + rows > limit:
                    self._inflight -= 1
                    self._stats.overloaded += 1
                    raise errors.Overloaded(f"the queue holds {self._queued_rows} rows (limit {limit}); retry later",
                                            {"queued_rows": self._queued_rows, "max_queue_rows": limit},
                                            retry_after=1)
                pending = Pending(inputs, rows, time.perf_counter(), self.settings.request_timeout)
                self._queue.append(pending)
                self._queued_rows += rows
                if self._worker_waiting:
                    self._cond.notify()
        if inline:
            return self._run_inline(inputs, rows, direct)
        return self._await(pending)

    def _run_inline(self, inputs: Arrays, rows: int, direct: bool) -> Arrays:
        """Nothing to batch with: run on the caller's thread, then wake the worker if others queued."""
        try:
            outputs = run_in_chunks(self._run, inputs, rows, self.settings.max_batch_size)
        except Exception as exc:  # noqa: BLE001 - becomes this request's error
            error = self._model_error(exc, 1)
        else:
            error = None
        with self._cond:
            if not direct:
                self._busy = False
            self._inflight -= 1
            self._stats.record_inline(rows)
            self._stats.errors += error is not None
            if (self._queue or self._closed) and self._worker_waiting:
                self._cond.notify()
        if error is not None:
            raise error
        return outputs

    def _await(self, pending: Pending) -> Arrays:
        """Block until the worker answers, or drop the request from the queue at its deadline."""
        if pending.deadline is None:
            pending.done.acquire()
        elif not pending.done.acquire(timeout=max(pending.deadline - time.perf_counter(), 0.0)):
            with self._cond:
                if pending.state == QUEUED:
                    self._expire(pending)
            pending.done.acquire()
        if pending.error is not None:
            raise pending.error
        assert pending.outputs is not None
        return pending.outputs

    # -- worker ----------------------------------------------------------------
    def _loop(self) -> None:
        """Take batches off the queue and run them until closed and drained."""
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
                self._busy = True
            failed = self._execute(batch)
            with self._cond:
                self._busy = False
                self._inflight -= len(batch)
                self._stats.errors += failed

    def _next_batch(self) -> list[Pending] | None:
        """(Lock held.) Wait for work, optionally for company, and take up to max_batch_size rows."""
        while True:
            self._worker_waiting = True
            while self._busy or (not self._queue and not self._closed):
                self._cond.wait()
            if not self._queue:
                self._worker_waiting = False
                return None
            self._expire_due(time.perf_counter())
            if not self._queue:
                continue
            self._wait_for_company()
            self._worker_waiting = False
            self._expire_due(time.perf_counter())
            if self._queue:
                return self._take()

    def _wait_for_company(self) -> None:
        """(Lock held.) Hold the oldest request while more are expected and time allows."""
        until = self._queue[0].enqueued + self._delay
        limit = self.settings.max_batch_size
        while not self._closed and self._queued_rows < limit and len(self._queue) < self._hint():
            remaining = until - time.perf_counter()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _take(self) -> list[Pending]:
        """(Lock held.) Pop the oldest requests that fit in one forward pass (an oversized one goes alone)."""
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= self.settings.max_batch_size:
            rows += self._queue[0].rows
            batch.append(self._queue.popleft())
        self._queued_rows -= rows
        now = time.perf_counter()
        for pending in batch:
            pending.state = TAKEN
        self._stats.record_batch([now - p.enqueued for p in batch], rows)
        return batch

    def _execute(self, batch: list[Pending]) -> int:
        """Run one batch and hand each request its own rows (or the batch's error); return failures."""
        try:
            results = run_merged(self._run, batch, self.settings.max_batch_size)
        except Exception as exc:  # noqa: BLE001 - every request of this batch, and no other, fails
            error = self._model_error(exc, len(batch))
            for pending in batch:
                pending.finish(None, copy.copy(error))  # one instance per request thread
            return len(batch)
        for pending, outputs in zip(batch, results):
            pending.finish(outputs, None)
        return 0

    # -- helpers ---------------------------------------------------------------
    def _hint(self) -> int:
        """(Lock held.) How many requests were recently in flight at once (1 at a single client)."""
        return int(self._level + 0.5)

    def _expire_due(self, now: float) -> None:
        """(Lock held.) Drop queued requests whose deadline has passed."""
        for pending in [p for p in self._queue if p.deadline is not None and p.deadline <= now]:
            self._expire(pending)

    def _expire(self, pending: Pending) -> None:
        """(Lock held.) Remove a still-queued request and answer it with 504."""
        self._queue.remove(pending)
        self._queued_rows -= pending.rows
        self._stats.deadline += 1
        self._inflight -= 1
        timeout = self.settings.request_timeout
        pending.finish(None, errors.DeadlineExceeded(
            f"the request waited {timeout:g}s in the queue without running", {"request_timeout": timeout}))

    def _model_error(self, exc: Exception, requests: int) -> errors.ServingError:
        """The error each request of a failed batch receives (logged once, with the traceback)."""
        if isinstance(exc, errors.ServingError):
            return exc
        log.error("forward pass failed for a batch of %d request(s)", requests, exc_info=exc)
        return errors.InternalError(f"the model failed on this batch: {type(exc).__name__}",
                                    {"exception": type(exc).__name__})

    # -- reporting and shutdown -----------------------------------------------------
    def stats(self) -> dict:
        """Counters for `GET /models/NAME` (and later a Prometheus endpoint)."""
        with self._cond:
            return self._stats.snapshot(queued_requests=len(self._queue), queued_rows=self._queued_rows)

    def close(self, timeout: float = CLOSE_GRACE_S) -> None:
        """Refuse new requests, let the worker run what is queued, then fail anything left."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join(timeout)
        with self._cond:
            while self._queue:
                pending = self._queue.popleft()
                self._queued_rows -= pending.rows
                self._inflight -= 1
                pending.finish(None, errors.ModelNotAvailable(
                    "the model version was unloaded before the request ran", {"state": "UNLOADING"}))
