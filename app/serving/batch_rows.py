"""The rows side of batching: one waiting request, running requests alone, in chunks or merged,
expiring the head of a deadline-ordered queue, and the errors a request receives.

Pure data handling with numpy (no threads besides each request's answer lock, no TensorFlow);
`batching.Batcher` decides *when* these run, and holds its lock around `Pending.finish` and `pop_expired`.
"""
from __future__ import annotations

import _thread
import copy
import logging
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np

from app import errors
from app.serving.types import Arrays, ForwardPass

log = logging.getLogger("app.serving.batching")

QUEUED, TAKEN, DONE = 0, 1, 2  # waiting in the queue, inside the worker's forward pass, answered


class Pending:
    """One waiting request: inputs, deadline, and a lock released when its answer is set."""

    __slots__ = ("inputs", "rows", "enqueued", "deadline", "state", "outputs", "error", "done")

    def __init__(self, inputs: Arrays, rows: int, now: float, timeout: float):
        self.inputs, self.rows, self.enqueued = inputs, rows, now
        self.deadline = now + timeout if timeout > 0 else None
        self.state = QUEUED
        self.outputs: Arrays | None = None
        self.error: errors.ServingError | None = None
        self.done = _thread.allocate_lock()
        self.done.acquire()  # released once: outputs or error are set

    def finish(self, outputs: Arrays | None, error: errors.ServingError | None) -> None:
        """Set the answer once and wake the caller (a later answer, e.g. a pass past the deadline, is dropped)."""
        if self.state == DONE:
            return
        self.outputs, self.error, self.state = outputs, error, DONE
        self.done.release()


def pop_expired(queue: deque[Pending], now: float) -> Iterator[Pending]:
    """Pop the requests due by `now` off the head of a queue in deadline order (one shared timeout:
    FIFO); a request behind the first one still in time is never looked at."""
    while queue and queue[0].deadline is not None and queue[0].deadline <= now:
        yield queue.popleft()


def take_batch(queue: deque[Pending], max_batch_size: int) -> tuple[list[Pending], int]:
    """Pop the oldest requests that fit in one forward pass (an oversized one goes alone), and their rows."""
    batch = [queue.popleft()]
    rows = batch[0].rows
    while queue and rows + queue[0].rows <= max_batch_size:
        rows += queue[0].rows
        batch.append(queue.popleft())
    for pending in batch:
        pending.state = TAKEN
    return batch, rows


def answer_all(batch: Sequence[Pending], results: Sequence[Arrays], error: errors.ServingError | None) -> None:
    """Give each request of a finished pass its own rows, or its own copy of the pass's error."""
    if error is not None:
        for pending in batch:
            pending.finish(None, copy.copy(error))  # one instance per request thread
    else:
        for pending, outputs in zip(batch, results):
            pending.finish(outputs, None)


def waited(batch: Sequence[Pending], now: float) -> list[float]:
    """Seconds each request of a batch spent in the queue."""
    return [now - pending.enqueued for pending in batch]


def unloaded_error() -> errors.ModelNotAvailable:
    """The 503 of a request still unanswered when its model version closes."""
    return errors.ModelNotAvailable("the model version was unloaded before the request was answered",
                                    {"state": "UNLOADING"})


def overloaded_error(where: str, held_rows: int, limit: int) -> errors.Overloaded:
    """The 429 of a request that would take the held rows past `max_queue_rows`."""
    return errors.Overloaded(f"{where} {held_rows} rows (limit {limit}); retry later",
                             {"queued_rows": held_rows, "max_queue_rows": limit}, retry_after=1)


DEADLINE_REASONS = {
    "queued": "the request waited {T} in the queue without running",
    "taken": "the forward pass of the request's batch was still running after {T}",
    "stalled": "no forward pass has finished for over {T} (the request timeout): refused rather than queued behind it",
}


def deadline_error(timeout: float, reason: str, **details: float) -> errors.DeadlineExceeded:
    """The 504 of a request `request_timeout` did not let through, for one of `DEADLINE_REASONS`."""
    return errors.DeadlineExceeded(DEADLINE_REASONS[reason].replace("{T}", f"{timeout:g}s"),
                                   {"request_timeout": timeout, "reason": reason, **details})


def model_error(exc: Exception, requests: int) -> errors.ServingError:
    """The error each request of a failed forward pass receives (logged once, with the traceback)."""
    if isinstance(exc, errors.ServingError):
        return exc
    log.error("forward pass failed for a batch of %d request(s)", requests, exc_info=exc)
    return errors.InternalError(f"the model failed on this batch: {type(exc).__name__}",
                                {"exception": type(exc).__name__})


def run_in_chunks(run: ForwardPass, inputs: Arrays, rows: int, max_batch_size: int) -> Arrays:
    """Run `inputs` in chunks of at most `max_batch_size` rows and reassemble in order."""
    if rows <= max_batch_size:
        return run(inputs)
    parts = [run({name: array[start:start + max_batch_size] for name, array in inputs.items()})
             for start in range(0, rows, max_batch_size)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def run_merged(run: ForwardPass, batch: Sequence[Pending], max_batch_size: int) -> list[Arrays]:
    """Each request's own outputs, in order: one forward pass over the concatenated rows
    (a lone request runs as it is, split into chunks when it is larger than `max_batch_size`)."""
    if len(batch) == 1:
        only = batch[0]
        return [run_in_chunks(run, only.inputs, only.rows, max_batch_size)]
    merged = {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}
    outputs = run(merged)
    results, start = [], 0
    for pending in batch:
        results.append({name: value[start:start + pending.rows] for name, value in outputs.items()})
        start += pending.rows
    return results
