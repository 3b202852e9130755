"""The explain lane: explanations run on their own bounded threads, never in a version's prediction batcher.

`SERVING_EXPLAIN_THREADS` threads compute; at most `SERVING_EXPLAIN_QUEUE` more explanations wait for
one (beyond: 429 `overloaded`); each has `SERVING_EXPLAIN_TIMEOUT` seconds, waiting included (504).
TensorFlow is imported by the first explanation, on a lane thread (app.serving.explain_runtime).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from app import errors
from app.serving.explain_types import ExplainOptions, ExplainUnavailable, Explanation
from app.serving.servable import ServableVersion
from app.serving.types import Arrays

EXPLAIN_NICENESS = 10  # added to the lane threads' nice value (os.setpriority on the thread)


def why_unexplainable(servable: ServableVersion) -> str | None:
    """Why this AVAILABLE version cannot be explained, or None when it can (before any TensorFlow)."""
    path = servable.source.path
    if path is not None and path.suffix == ".tflite":
        return "this version is a .tflite file served by LiteRT only: it has no Keras model to take gradients of"
    if servable.keras_model is None:
        return "this version keeps no Keras model to take gradients of"
    return None


class ExplainLane:
    """A bounded pool for explanations, with its own admission (429) and deadline (504)."""

    def __init__(self, threads: int, queue: int, timeout: float):
        self.threads, self.queue, self.timeout = threads, queue, timeout
        self._executor: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(threads + queue)
        self._build = threading.Lock()

    def deadline(self) -> float:
        """The monotonic time past which a new explanation stops."""
        return time.monotonic() + (self.timeout or 1e9)

    def explain(self, servable: ServableVersion, arrays: Arrays, options: ExplainOptions) -> Explanation:
        """Run one explanation on the lane and wait for it; 429 when the lane is full, 504 past the deadline."""
        reason = why_unexplainable(servable)
        if reason:
            raise ExplainUnavailable(reason, {"model": servable.name, "version": servable.version})
        if not self._slots.acquire(blocking=False):
            raise errors.Overloaded(f"the explain lane is full ({self.threads} running, {self.queue} waiting): "
                                    "retry later", {"explain_threads": self.threads, "explain_queue": self.queue})
        try:
            future = self._pool().submit(self._run, servable, arrays, options)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._released)
        try:
            return future.result(timeout=max(options.deadline - time.monotonic(), 0.0))
        except FutureTimeout:
            future.cancel()
            raise errors.DeadlineExceeded(f"the explanation took longer than {self.timeout:g} s "
                                          "(SERVING_EXPLAIN_TIMEOUT)", {"timeout": self.timeout}) from None

    def close(self) -> None:
        """Stop the lane's threads once their work is done."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._build:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="explain",
                                                        initializer=lower_priority)
        return self._executor

    def _run(self, servable: ServableVersion, arrays: Arrays, options: ExplainOptions) -> Explanation:
        if time.monotonic() > options.deadline:
            raise errors.DeadlineExceeded("the explanation waited past its deadline (SERVING_EXPLAIN_TIMEOUT)")
        return explainer_of(servable, self._build).explain(arrays, options)

    def _released(self, _: Future) -> None:
        self._slots.release()


def lower_priority() -> None:
    """Nice this lane thread by EXPLAIN_NICENESS: where cores are short, predictions run first (Linux)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: the worker's priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EXPLAIN_NICENESS)


def explainer_of(servable: ServableVersion, lock: threading.Lock):  # -> explain_runtime.Explainer
    """The servable's Explainer, built (and its gradients traced) on first use."""
    if servable.explainer is None:
        from app.serving.explain_runtime import Explainer  # imports TensorFlow

        with lock:
            if servable.explainer is None:
                assert servable.signature is not None
                servable.explainer = Explainer(servable.keras_model, servable.signature)
    return servable.explainer
