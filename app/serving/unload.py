"""Unloading one servable version: drain it (no new request reaches it, its work in hand finishes), close its
batcher, drop what holds the model and give the freed memory back to the OS.

The manager re-routes first, then makes a `Drain`, and checks `Drain.done()` on each tick of its lifecycle
thread: at least `UNLOAD_GRACE_S` after the re-route (a request that resolved just before it reaches its
batcher by then) and once the batcher has nothing queued or running. `release()` then closes the batcher
(nothing is left for it to fail), drops the batcher, Keras model and explainer, runs `gc.collect()` and glibc's
`malloc_trim(0)` (skipped where there is no glibc), and leaves the version END.
"""
from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from app import errors
from app.serving import events
from app.serving.servable import ServableVersion
from app.serving.types import ModelState

UNLOAD_GRACE_S = 1.0  # the least time between re-routing a version and closing its batcher


class RetiredBatcher:
    """Stands in for the batcher of an unloaded version: a request that still holds the servable answers 503."""

    def submit(self, inputs: Any, rows: int) -> Any:
        """Refuse: the version was unloaded."""
        raise errors.ModelNotAvailable("the model version was unloaded", {"state": ModelState.END.value})

    def stats(self) -> dict[str, Any]:
        """No counters: the version is gone."""
        return {}


RETIRED = RetiredBatcher()


def batcher_busy(batcher: Any) -> bool:
    """Whether `batcher` holds work: requests queued, a shared pass running or unshared calls inline."""
    cond = getattr(batcher, "_cond", None)
    if cond is None:  # not an app.serving.batching.Batcher (a test's stand-in): nothing to wait for
        return False
    with cond:
        return bool(batcher._queue or batcher._busy or batcher._direct_rows or batcher._batch)


@dataclass
class Drain:
    """One version on its way out: since when nothing routes to it, and why it goes."""

    servable: ServableVersion
    reason: str
    since: float = field(default_factory=time.monotonic)
    grace: float = UNLOAD_GRACE_S

    def done(self, now: float | None = None) -> bool:
        """Whether the grace has passed and its batcher holds no work."""
        now = time.monotonic() if now is None else now
        return now - self.since >= self.grace and not batcher_busy(self.servable.batcher)


class Drains:
    """The versions on their way out: retired (routed to no more) this tick, draining, then released."""

    def __init__(self, on_state: Callable[[ServableVersion, ModelState], None]):
        self._on_state = on_state  # (servable, its new state): the manager publishes it
        self._retiring: list[tuple[ServableVersion, str]] = []
        self._draining: list[Drain] = []

    def __bool__(self) -> bool:
        return bool(self._retiring or self._draining)

    def servables(self) -> list[ServableVersion]:
        """Every servable retired or draining."""
        return [servable for servable, _ in self._retiring] + [drain.servable for drain in self._draining]

    def retire(self, servable: ServableVersion, why: str) -> None:
        """Take `servable` out of service (call after re-routing): UNLOADING and drained, or END at once."""
        if servable.batcher is None:  # never loaded (queued, or FAILED): nothing to drain
            servable.state, servable.error = ModelState.END, why
            servable.settled.set()
            self._on_state(servable, ModelState.END)
            events.version_event("unloaded", servable, 0.0)
            return
        servable.state = ModelState.UNLOADING
        self._on_state(servable, ModelState.UNLOADING)
        self._retiring.append((servable, why))

    def tick(self) -> None:
        """Start the grace of the versions retired since the last tick; release those drained."""
        now = time.monotonic()
        self._draining.extend(Drain(servable, why, since=now) for servable, why in self._retiring)
        self._retiring = []
        for drain in [drain for drain in self._draining if drain.done(now)]:
            self._draining.remove(drain)
            started = time.monotonic()
            release(drain.servable, drain.reason)
            self._on_state(drain.servable, ModelState.END)
            events.version_event("unloaded", drain.servable, time.monotonic() - drain.since,
                                 release_s=round(time.monotonic() - started, 3))


def release(servable: ServableVersion, reason: str) -> None:
    """Close the batcher, drop the references to the model, collect and trim: the version ends END."""
    batcher = servable.batcher
    if batcher is not None and batcher is not RETIRED and hasattr(batcher, "close"):
        batcher.close()
    servable.batcher = RETIRED if batcher is not None else None
    servable.keras_model = None
    servable.explainer = None
    servable.state, servable.error = ModelState.END, reason
    del batcher
    gc.collect()
    trim_malloc()


def trim_malloc() -> bool:
    """glibc's malloc_trim(0): return free heap pages to the OS; False where there is no glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc; musl and macOS have no malloc_trim
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None
