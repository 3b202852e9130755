"""Counters of one batcher: requests, rows, batches, batch-size and queue-time histograms, rejections;
and the concurrency hint (a maximum that decays over time).

Histogram buckets are upper bounds (`le`, Prometheus style) with non-cumulative counts;
the caller holds the batcher's lock around every method. Each request's queue time also goes to
the Prometheus histogram `keras_serve_queue_duration_seconds` and to the request's facts (the
access line's `queue_ms`).
"""
from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from app.observability import facts, metrics
from app.observability.metrics import timed_pass  # noqa: F401 - the batcher's forward pass, observed
from app.serving.batch_rows import Pending

BATCH_SIZE_BOUNDS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
QUEUE_MS_BOUNDS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
                                      10000)
RECENT_SAMPLES = 2048  # queue times kept for the p50/p99 estimate
HINT_HALF_LIFE_S = 0.1  # the concurrency hint halves every 0.1 s: a burst of 32 is forgotten ~0.5 s after it ends


def decayed_max(level: float, level_at: float, now: float, inflight: int, half_life: float) -> float:
    """`level` (set at time `level_at`) halved per `half_life` seconds since, or `inflight` if larger:
    how many requests were recently in flight at once, however many or few arrived meanwhile."""
    return max(level * 0.5 ** ((now - level_at) / half_life), float(inflight))


class TimedPending(Pending):
    """A queued request that knows its request's facts (to note its queue time there once taken)."""

    __slots__ = ("facts",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.facts = facts.current()


class BatchStats:
    """Plain counters; `snapshot()` makes them JSON-ready."""

    def __init__(self, model: str = "model", version: int | None = None) -> None:
        self._queue_seconds = metrics.queue_histogram(model, version)  # None with metrics off
        self.requests = 0
        self.rows = 0
        self.batches = 0
        self.inline_batches = 0
        self.errors = 0
        self.overloaded = 0
        self.deadline = 0
        self.batch_size_counts = [0] * (len(BATCH_SIZE_BOUNDS) + 1)
        self.batch_request_counts: dict[int, int] = {}
        self.queue_ms_counts = [0] * (len(QUEUE_MS_BOUNDS) + 1)
        self.queue_ms_sum = 0.0
        self.recent_queue_ms: deque[float] = deque(maxlen=RECENT_SAMPLES)

    def record_batch(self, queue_seconds: Sequence[float], rows: int, *, inline: bool = False) -> None:
        """One forward pass of `len(queue_seconds)` requests and `rows` rows."""
        self.batches += 1
        self.inline_batches += inline
        self.requests += len(queue_seconds)
        self.rows += rows
        self.batch_size_counts[bisect.bisect_left(BATCH_SIZE_BOUNDS, rows)] += 1
        self.batch_request_counts[len(queue_seconds)] = self.batch_request_counts.get(len(queue_seconds), 0) + 1
        for seconds in queue_seconds:
            if self._queue_seconds is not None:
                metrics.TALLY.observe(self._queue_seconds, seconds)
            ms = seconds * 1000.0
            self.queue_ms_counts[bisect.bisect_left(QUEUE_MS_BOUNDS, ms)] += 1
            self.queue_ms_sum += ms
            self.recent_queue_ms.append(ms)

    def record_taken(self, batch: Sequence[Pending], rows: int) -> None:
        """The worker took `batch` (`rows` rows) out of the queue for one pass: their queue times."""
        now = time.perf_counter()
        queue_seconds = [now - pending.enqueued for pending in batch]
        for pending, seconds in zip(batch, queue_seconds):
            if isinstance(pending, TimedPending):
                pending.facts.queue_seconds = seconds
        self.record_batch(queue_seconds, rows)

    def record_inline(self, rows: int) -> None:
        """One request that ran on its own thread at once: `record_batch((0.0,), rows, inline=True)`,
        in fewer steps (it is the path of every request at low concurrency)."""
        self.batches += 1
        self.inline_batches += 1
        self.requests += 1
        self.rows += rows
        self.batch_size_counts[bisect.bisect_left(BATCH_SIZE_BOUNDS, rows)] += 1
        self.batch_request_counts[1] = self.batch_request_counts.get(1, 0) + 1
        self.queue_ms_counts[0] += 1  # 0 ms: the first bucket
        if self._queue_seconds is not None:
            metrics.TALLY.observe(self._queue_seconds, 0.0)
        facts.current().queue_seconds = 0.0
        self.recent_queue_ms.append(0.0)

    def snapshot(self, **current: Any) -> dict[str, Any]:
        """Everything as a JSON-ready dict (`current` adds gauges such as the queue length)."""
        recent = sorted(self.recent_queue_ms)
        return {
            "requests": self.requests,
            "rows": self.rows,
            "batches": self.batches,
            "inline_batches": self.inline_batches,
            "mean_batch_rows": round(self.rows / self.batches, 3) if self.batches else 0.0,
            "mean_batch_requests": round(self.requests / self.batches, 3) if self.batches else 0.0,
            "batch_rows_histogram": _histogram(BATCH_SIZE_BOUNDS, self.batch_size_counts),
            "batch_requests": {str(k): v for k, v in sorted(self.batch_request_counts.items())},
            "queue_ms": {
                "count": self.requests,
                "sum": round(self.queue_ms_sum, 3),
                "mean": round(self.queue_ms_sum / self.requests, 3) if self.requests else 0.0,
                "p50_recent": _percentile(recent, 0.50),
                "p99_recent": _percentile(recent, 0.99),
                "histogram": _histogram(QUEUE_MS_BOUNDS, self.queue_ms_counts),
            },
            "rejected": {"overloaded": self.overloaded, "deadline_exceeded": self.deadline},
            "errors": self.errors,
            **current,
        }


def _histogram(bounds: Sequence[float], counts: Sequence[int]) -> list[dict[str, Any]]:
    """[{"le": bound, "count": n}, ..., {"le": "+Inf", "count": n}] with non-cumulative counts."""
    return [{"le": bound, "count": count} for bound, count in zip([*bounds, "+Inf"], counts)]


def _percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted samples (nearest rank), 0.0 when there are none."""
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
