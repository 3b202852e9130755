"""The rows side of batching: one queued request, and running requests alone, in chunks or merged.

Pure data handling with numpy (no threads besides each request's answer lock, no TensorFlow);
`batching.Batcher` decides *when* these run.
"""
from __future__ import annotations

import _thread
from collections.abc import Sequence

import numpy as np

from app import errors
from app.serving.types import Arrays, ForwardPass

QUEUED, TAKEN, DONE = 0, 1, 2


class Pending:
    """One queued request: inputs, deadline, and a lock released when its answer is set."""

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
        """Set the answer once and wake the caller (a second answer is ignored)."""
        if self.state == DONE:
            return
        self.outputs, self.error, self.state = outputs, error, DONE
        self.done.release()


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
