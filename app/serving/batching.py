"""Batching attached to a loaded model version.

PLACEHOLDER until the dynamic batcher lands: runs each request on the caller's
thread, split into chunks of at most `max_batch_size` rows.
Interface the rest of the server relies on:
- `Batcher(run, settings)`; `submit(inputs, rows) -> outputs` (blocking; raises ServingError);
- `stats() -> dict` (JSON-ready counters); `close()` (fail or finish every queued request).
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from app.serving.types import BatchingSettings

Arrays = dict[str, np.ndarray]
RunFn = Callable[[Arrays], Arrays]


def run_in_chunks(run: RunFn, inputs: Arrays, rows: int, max_batch_size: int) -> Arrays:
    """Run `inputs` in chunks of at most `max_batch_size` rows and reassemble in order."""
    if rows <= max_batch_size:
        return run(inputs)
    parts = [run({name: array[start:start + max_batch_size] for name, array in inputs.items()})
             for start in range(0, rows, max_batch_size)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class Batcher:
    """Serialises calls to one model version (placeholder for the dynamic batcher)."""

    def __init__(self, run: RunFn, settings: BatchingSettings):
        self._run = run
        self.settings = settings
        self._lock = threading.Lock()
        self._requests = 0
        self._rows = 0

    def submit(self, inputs: Arrays, rows: int) -> Arrays:
        """Run one validated request and return its own outputs."""
        with self._lock:
            self._requests += 1
            self._rows += rows
            return run_in_chunks(self._run, inputs, rows, self.settings.max_batch_size)

    def stats(self) -> dict:
        """Counters for `GET /models/NAME`."""
        return {"requests": self._requests, "rows": self._rows}

    def close(self) -> None:
        """Nothing is queued in the placeholder."""
