"""The Prometheus metrics (prometheus-client; multiprocess mode under gunicorn, see `multiproc`).

Under gunicorn.conf.py every worker writes its values to memory-mapped files in
PROMETHEUS_MULTIPROC_DIR and `/metrics` sums them: counters and histograms over every worker that
ever ran since the master started (so they never go backwards when a worker is replaced), the
in-flight gauge over the live ones. `enabled` is set by the app factory (SERVING_METRICS).

The request path does not write those files itself: one write (a lock, getpid, a struct pack) is
about a microsecond and a request made eleven. It appends to `TALLY` (app.observability.tally:
a deque, no lock), and a thread of each worker adds up and writes the sums every FLUSH_S seconds,
at exit, and before `/metrics` answers. So another worker's figures lag by at most FLUSH_S; a worker killed
with SIGKILL loses at most its last FLUSH_S of counts (sums still never go backwards).
"""
from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from app.observability.tally import FLUSH_S, Tally  # noqa: F401 - FLUSH_S: the lag of the sums
from app.serving.types import Arrays, ForwardPass, ModelState

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
LOAD_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MODEL = ("model", "version")

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


TALLY = Tally(INFLIGHT)


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
