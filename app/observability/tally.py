"""The metrics' tally: what the request path counts, queued without a lock, added up and written by a thread.

`Tally.begin/end/count/observe/observe_pass` append one tuple to a deque (atomic in CPython, no bucket
search on the request's thread); `flush()` drains the deque into prometheus-client's counters and
histograms, every FLUSH_S seconds on the flusher thread, at exit, and when `/metrics` answers.
"""
from __future__ import annotations

import atexit
import bisect
import logging
import os
import threading
from collections import deque
from typing import Any

log = logging.getLogger(__name__)
FLUSH_S = 1.0  # how often a worker writes its tally to the shared files


class Tally:
    """Counts and observations queued as they happen, written to the metrics by `flush()`.

    The request path only appends a tuple to a deque (atomic, no lock, no bucket search): a counted
    request is `(counter, histogram, seconds)`, one in flight `None`, a count `(counter,)`, an
    observation `(histogram, value)`. `flush()` drains them in one tight loop (its caches warm, on
    the flusher's thread), so `inflight` is the figure as of the last flush."""

    def __init__(self, inflight_gauge: Any = None) -> None:  # the gauge set to `inflight` at each flush
        self.gauge = inflight_gauge
        self._forget()
        os.register_at_fork(after_in_child=self._forget)  # a forked worker writes its own figures only
        atexit.register(self.flush)

    def _forget(self) -> None:
        self._lock, self._events, self.inflight, self._flusher = threading.Lock(), deque(), 0, None

    def begin(self) -> None:
        """One more request in flight."""
        self._events.append(None)
        if self._flusher is None:
            self._start_flusher()

    def end(self, counter: Any, histogram: Any, seconds: float) -> None:
        """A request answered: in flight no more, counted in `counter`, its time in `histogram`."""
        self._events.append((counter, histogram, seconds))

    def count(self, counter: Any) -> None:
        """One more in `counter`."""
        self._events.append((counter,))

    def observe(self, histogram: Any, value: float) -> None:
        """One observation of `value` in `histogram`."""
        self._events.append((histogram, value))
        if self._flusher is None:
            self._start_flusher()

    def observe_pass(self, seconds: Any, rows: Any, elapsed: float, row_count: int) -> None:
        """One forward pass: `elapsed` in histogram `seconds`, `row_count` in histogram `rows`."""
        self._events.append((seconds, elapsed))
        self._events.append((rows, row_count))
        if self._flusher is None:
            self._start_flusher()

    def flush(self) -> None:
        """Write what was counted since the last flush, and the in-flight gauge."""
        counts: dict[Any, int] = {}
        observed: dict[Any, list] = {}  # histogram child -> [sum, [count per bucket]]
        with self._lock:  # one flush at a time: each drains what the others left
            popleft, inflight = self._events.popleft, self.inflight
            while True:
                try:
                    event = popleft()
                except IndexError:
                    break
                if event is None:
                    inflight += 1
                    continue
                if len(event) != 2:
                    counts[event[0]] = counts.get(event[0], 0) + 1
                    if len(event) == 1:
                        continue
                    inflight -= 1
                histogram, value = event[-2:]
                pending = observed.get(histogram)
                if pending is None:
                    pending = observed[histogram] = [0.0, [0] * len(histogram._upper_bounds)]
                pending[0] += value
                pending[1][bisect.bisect_left(histogram._upper_bounds, value)] += 1
            self.inflight = inflight
            for counter, amount in counts.items():
                counter.inc(amount)
            for histogram, (total, buckets) in observed.items():  # prometheus-client's own parts of a histogram
                if total:
                    histogram._sum.inc(total)
                for bucket, amount in zip(histogram._buckets, buckets):
                    if amount:
                        bucket.inc(amount)
            if self.gauge is not None:
                self.gauge.set(inflight)

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True)
        self._flusher.start()

    def _flush_forever(self) -> None:
        event = threading.Event()
        while not event.wait(FLUSH_S):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a failed write must not stop the drain (the deque would grow)
                log.exception("writing the metrics failed; the next flush tries again")
