"""The Prometheus metrics (prometheus-client; multiprocess mode under gunicorn, see `multiproc`).

Under gunicorn.conf.py every worker writes its values to memory-mapped files in
PROMETHEUS_MULTIPROC_DIR and `/metrics` sums them: counters and histograms over every worker that
ever ran since the master started (so they never go backwards when a worker is replaced), the
in-flight gauge over the live ones. `enabled` is set by the app factory (SERVING_METRICS).

The request path does not write those files itself: one write (a lock, getpid, a struct pack) is
about a microsecond and a request made eleven. It appends to `TALLY` (`Tally`: a deque, no lock),
and a thread of each worker adds up and writes the sums every FLUSH_S seconds, at exit, and
before `/metrics` answers. So another worker's figures lag by at most FLUSH_S; a worker killed
with SIGKILL loses at most its last FLUSH_S of counts (sums still never go backwards).
"""
from __future__ import annotations

import atexit
import bisect
import os
import threading
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from app.serving.types import Arrays, ForwardPass, ModelState

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
LOAD_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MODEL = ("model", "version")
FLUSH_S = 1.0  # how often a worker writes its tally to the shared files

REQUESTS = Counter("keras_serve_requests", "Inference requests answered, by surface and HTTP status.",
                   ("protocol", "code", *MODEL))
REQUEST_SECONDS = Histogram("keras_serve_request_duration_seconds",
                            "Time from the request reaching the app to its answer.", ("protocol", *MODEL),
                            buckets=LATENCY_BUCKETS)
QUEUE_SECONDS = Histogram("keras_serve_queue_duration_seconds",
                          "Time a request waited in its model's batch queue (0 when it ran at once).", MODEL,
                          buckets=LATENCY_BUCKETS)
INFERENCE_SECONDS = Histogram("keras_serve_inference_duration_seconds", "Time of one forward pass.", MODEL,
                              buckets=LATENCY_BUCKETS)
BATCH_ROWS = Histogram("keras_serve_batch_rows", "Rows per forward pass.", MODEL, buckets=ROWS_BUCKETS)
REJECTED = Counter("keras_serve_rejected_requests", "Inference requests refused, by reason.", ("reason", *MODEL))
INFLIGHT = Gauge("keras_serve_inflight_requests", "Inference requests being served now, over every worker.",
                 multiprocess_mode="livesum")
MODEL_STATE = Gauge("keras_serve_model_state", "1 for each state a model version is in (in any live worker).",
                    (*MODEL, "state"), multiprocess_mode="livemax")
LOAD_SECONDS = Histogram("keras_serve_model_load_duration_seconds",
                         "Time to load a model version (read, compile, warm up), in each worker.", MODEL,
                         buckets=LOAD_BUCKETS)

enabled = True  # set by the app factory from SERVING_METRICS, read when batchers are made


class Tally:
    """Counts and observations queued as they happen, written to the metrics by `flush()`.

    The request path only appends a tuple to a deque (atomic, no lock, no bucket search): a counted
    request is `(counter, histogram, seconds)`, one in flight `None`, a count `(counter,)`, an
    observation `(histogram, value)`. `flush()` drains them in one tight loop (its caches warm, on
    the flusher's thread), so `inflight` is the figure as of the last flush."""

    def __init__(self) -> None:
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
            INFLIGHT.set(inflight)

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True)
        self._flusher.start()

    def _flush_forever(self) -> None:
        event = threading.Event()
        while not event.wait(FLUSH_S):
            self.flush()


TALLY = Tally()


def model_labels(model: str | None, version: int | None) -> tuple[str, str]:
    """The `model` and `version` label values ("" when unknown)."""
    return (model or "", "" if version is None else str(version))


def timed_pass(run: ForwardPass, model: str, version: int | None) -> ForwardPass:
    """`run`, observing its duration and rows on every call (`run` itself when metrics are off)."""
    if not enabled:
        return run
    seconds, rows = INFERENCE_SECONDS.labels(*model_labels(model, version)), BATCH_ROWS.labels(
        *model_labels(model, version))

    def observed(inputs: Arrays) -> Arrays:
        started = perf_counter()
        outputs = run(inputs)
        TALLY.observe_pass(seconds, rows, perf_counter() - started, len(next(iter(inputs.values()))))
        return outputs

    return observed


def queue_histogram(model: str, version: int | None) -> Any:
    """The queue-time histogram of one model version (None when metrics are off)."""
    return QUEUE_SECONDS.labels(*model_labels(model, version)) if enabled else None


def publish_state(name: str, version: int, state: ModelState) -> None:
    """Set the state gauge of one version: 1 for `state`, 0 for the others."""
    for each in ModelState:
        MODEL_STATE.labels(name, str(version), each.value).set(1 if each is state else 0)


def observed_loader(loader: Callable[[Any], None], on: bool) -> Callable[[Any], None]:
    """The registry's loader, publishing each version's state and load time (the loader itself when off)."""
    if not on:
        return loader

    def load(servable: Any) -> None:
        publish_state(servable.name, servable.version, ModelState.LOADING)
        started = perf_counter()
        try:
            loader(servable)
        finally:
            publish_state(servable.name, servable.version, servable.state)
            if servable.state is ModelState.AVAILABLE:
                LOAD_SECONDS.labels(servable.name, str(servable.version)).observe(perf_counter() - started)

    return load
