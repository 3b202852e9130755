"""Dynamic batching for one model version: queue, merge concurrent requests, run once, split.

`Batcher(run, settings, *, name, share_calls)`; `submit(inputs, rows) -> outputs` (blocking, raises
ServingError); `stats() -> dict`; `close(timeout)`. After Ray Serve's batch queue: one worker loop,
each waiting caller owns a lock. A request finding no pass running, the queue empty and a concurrency
hint of 1 runs inline: at once, on its own thread; with `share_calls=False` (a pass too cheap to be
worth a hand-off) every request runs inline, beside the others (the pass guards itself). Otherwise
it queues: the worker takes the oldest, waits for more while fewer are queued than the hint (at most
`max_batch_delay_ms` after the oldest, `max_batch_size` rows), runs once and hands each its rows.
The hint is the most requests in flight seen at arrivals, halving every `HINT_HALF_LIFE_S` seconds.

What bounds each path (T = `request_timeout`; T = 0 turns off both deadline rules):
- Queued: T after arrival a request answers 504 and its thread returns, still queued or taken into a
  pass that overran (the pass keeps the worker thread; its late answer is dropped). One T for all:
  deadlines follow queue order, so expiry pops from the head.
- Inline: nothing interrupts a call on the caller's thread; only the forward pass bounds it. An
  overdue pass draws no one in: once no pass has finished for T since an arrival first found one
  running, each new request answers 504 at once (no queueing, no inline call) until a pass finishes.
- Admission: `max_queue_rows` bounds the queued rows, or with `share_calls=False` the rows running
  inline; beyond it 429 with retry_after (a larger request is let in when nothing else is held).
  So a hung model pins the thread of its pass (the worker's, or one inline caller's), or unshared up
  to `max_queue_rows` rows of inline callers; it holds each queued caller for at most T.
"""
from __future__ import annotations

import threading
import time
from collections import deque

from app import errors
from app.serving import batch_rows
from app.serving.batch_rows import QUEUED, TAKEN, Pending, run_in_chunks, run_merged
from app.serving.batch_stats import HINT_HALF_LIFE_S, BatchStats, TimedPending, decayed_max, timed_pass
from app.serving.types import Arrays, BatchingSettings, ForwardPass

CLOSE_GRACE_S = 10.0  # how long close() lets the worker drain before failing what is left


class Batcher:
    """Merges concurrent requests to one model version into shared forward passes."""

    def __init__(self, run: ForwardPass, settings: BatchingSettings, *, name: str = "model", share_calls: bool = True,
                 version: int | None = None):  # name and version: the metrics' labels
        self._run, self.settings, self.share_calls = timed_pass(run, name, version), settings, share_calls
        self._delay, self._timeout = settings.max_batch_delay_ms / 1000.0, settings.request_timeout
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Pending] = deque()
        self._queued_rows = 0
        self._busy = False               # a shared pass is running (the worker's, or one inline)
        self._direct_rows = 0            # rows of the unshared inline calls running now
        self._seen_busy: float | None = None  # when an arrival first found the running pass(es)
        self._batch: list[Pending] = []  # the worker's current batch
        self._closed = self._worker_waiting = False
        self._level, self._level_at = 0.0, 0.0  # the concurrency hint (rounded) and when it was set
        self._stats = BatchStats(name, version)
        self._worker = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._worker.start()

    def submit(self, inputs: Arrays, rows: int) -> Arrays:
        """Run one validated request (alone or merged with others) and return its own outputs."""
        with self._cond:
            if self._closed:
                raise errors.ModelNotAvailable("the model version is unloading", {"state": "UNLOADING"})
            if (self._busy or self._direct_rows) and self._timeout > 0:
                self._refuse_if_stalled()
            if not self.share_calls:
                if self._direct_rows:  # (a lone call skips the check)
                    self._admit(self._direct_rows, rows, "calls running now hold")
                self._direct_rows += rows
                inline = True
            else:
                if self._level > 1.0 or self._busy or self._queue:  # a lone request after a quiet spell: no clock
                    now, in_flight = time.perf_counter(), 1 + len(self._queue) + (len(self._batch) or self._busy)
                    self._level = decayed_max(self._level, self._level_at, now, in_flight, HINT_HALF_LIFE_S)
                    self._level_at = now
                inline = not self._busy and not self._queue and self._level < 1.5
                if inline:
                    self._busy = True
                else:
                    self._admit(self._queued_rows, rows, "the queue holds")
                    pending = TimedPending(inputs, rows, time.perf_counter(), self._timeout)
                    self._queue.append(pending)
                    self._queued_rows += rows
                    if self._worker_waiting:
                        self._cond.notify()
        return self._run_inline(inputs, rows) if inline else self._await(pending)

    def _run_inline(self, inputs: Arrays, rows: int) -> Arrays:
        """Nothing to batch with: run on the caller's thread, then wake the worker if others queued."""
        error = None
        try:
            outputs = run_in_chunks(self._run, inputs, rows, self.settings.max_batch_size)
        except Exception as exc:  # noqa: BLE001 - becomes this request's error
            error = batch_rows.model_error(exc, 1)
        with self._cond:
            if self.share_calls:
                self._busy = False
            else:
                self._direct_rows -= rows
            self._seen_busy = None
            self._stats.record_inline(rows)
            self._stats.errors += error is not None
            if (self._queue or self._closed) and self._worker_waiting:
                self._cond.notify()
        if error is not None:
            raise error
        return outputs

    def _await(self, pending: Pending) -> Arrays:
        """Block until the worker answers, or answer 504 at the deadline (queued, or in an overdue pass)."""
        if pending.deadline is None:
            pending.done.acquire()
        else:
            while not pending.done.acquire(timeout=max(pending.deadline - time.perf_counter(), 0.0)):
                with self._cond:
                    if pending.state == QUEUED:
                        self._expire_due(time.perf_counter())  # it and all older ones, once due
                    elif pending.state == TAKEN and time.perf_counter() >= pending.deadline:
                        self._stats.deadline += 1
                        pending.finish(None, batch_rows.deadline_error(self._timeout, "taken"))
        if pending.error is not None:
            raise pending.error
        return pending.outputs  # type: ignore[return-value]  # set with no error

    def _admit(self, held_rows: int, rows: int, where: str) -> None:
        """(Lock held.) 429 when `rows` more would take `held_rows` past `max_queue_rows`."""
        if held_rows and held_rows + rows > self.settings.max_queue_rows:
            self._stats.overloaded += 1
            raise batch_rows.overloaded_error(where, held_rows, self.settings.max_queue_rows)

    def _refuse_if_stalled(self) -> None:
        """(Lock held, a pass running.) 504 now if no pass finished for T since one was first found running."""
        now = time.perf_counter()
        if self._seen_busy is None:
            self._seen_busy = now
        elif now - self._seen_busy > self._timeout:
            self._stats.deadline += 1
            raise batch_rows.deadline_error(self._timeout, "stalled", stalled_seconds=round(now - self._seen_busy, 3))

    def _loop(self) -> None:
        """The worker: take a batch, run it, answer its requests; until closed and drained."""
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
                self._busy, self._batch = True, batch
            try:
                results, error = run_merged(self._run, batch, self.settings.max_batch_size), None
            except Exception as exc:  # noqa: BLE001 - every request of this batch, and no other, fails
                results, error = [], batch_rows.model_error(exc, len(batch))
            with self._cond:
                self._busy, self._seen_busy, self._batch = False, None, []
                self._stats.errors += len(batch) if error is not None else 0
                batch_rows.answer_all(batch, results, error)  # under the lock: a caller past its deadline answers too

    def _next_batch(self) -> list[Pending] | None:
        """(Lock held.) Wait for work, optionally for company, and take up to max_batch_size rows."""
        while True:
            self._worker_waiting = True
            while self._busy or (not self._queue and not self._closed):
                self._cond.wait()
            if not self._queue:
                return None  # closed and drained
            until = self._queue[0].enqueued + self._delay  # hold the oldest while more are expected
            while (not self._closed and self._queued_rows < self.settings.max_batch_size
                   and len(self._queue) < int(self._level + 0.5) and (remaining := until - time.perf_counter()) > 0):
                self._cond.wait(remaining)
            self._worker_waiting = False
            self._expire_due(time.perf_counter())
            if self._queue:
                batch, rows = batch_rows.take_batch(self._queue, self.settings.max_batch_size)
                self._queued_rows -= rows
                self._stats.record_taken(batch, rows)
                return batch

    def _expire_due(self, now: float) -> None:
        """(Lock held.) Answer 504 to the queued requests due by `now`: a run at the head of the queue."""
        for pending in batch_rows.pop_expired(self._queue, now):
            self._queued_rows -= pending.rows
            self._stats.deadline += 1
            pending.finish(None, batch_rows.deadline_error(self._timeout, "queued"))

    def stats(self) -> dict:
        """Counters for `GET /models/NAME` (and later a Prometheus endpoint)."""
        with self._cond:
            return self._stats.snapshot(queued_requests=len(self._queue), queued_rows=self._queued_rows)

    def close(self, timeout: float = CLOSE_GRACE_S) -> None:
        """Refuse new requests, let the worker run what is queued, then fail what is left (a stuck pass's too)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join(timeout)
        with self._cond:
            left, self._queued_rows = [*self._batch, *self._queue], 0
            self._queue.clear()
            for pending in left:
                pending.finish(None, batch_rows.unloaded_error())
