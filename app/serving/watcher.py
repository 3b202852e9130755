"""The watcher: each worker re-plans its models and applies the plans when the folder or the control state
may have changed.

Every `poll_seconds` (SERVING_POLL_SECONDS; 0: never) it calls `plan()` (the source's `plan_models` with the
current overrides and its publishing check, so a file still being copied waits) and `registry.apply()`s the
result: the manager's lifecycle thread does the loading, swapping and unloading. When `generation()` (the
control API's counter; a constant by default) changes it re-plans at once, waits for `wait_applied` and calls
`report(generation)`. It runs on its own thread, started once the registry first settled.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from app.serving.types import ModelPlan

log = logging.getLogger(__name__)
TICK_S = 0.05  # how often a changed generation is looked for
Plan = Callable[[], Mapping[str, ModelPlan]]


def no_generation() -> int:
    """The default generation: never changes."""
    return 0


def no_report(generation: int) -> None:
    """The default report: nobody waits for one."""


def current_overrides(app: Any) -> Mapping[str, Any]:
    """The overrides the control API last set, from the app's control (this worker's follower under gunicorn)."""
    extensions = getattr(app, "extensions", {})
    control = extensions.get("control_worker") or extensions.get("control")
    state = getattr(control, "state", None)
    return state().overrides() if callable(state) else {}


class Watcher:
    """Re-plans every `poll_seconds` and on a new control generation, and applies the plans to `registry`."""

    def __init__(self, registry: Any, plan: Plan, poll_seconds: float, *,
                 generation: Callable[[], int] = no_generation, report: Callable[[int], None] = no_report,
                 apply_timeout: float | None = None):
        self._registry, self._plan, self.poll_seconds = registry, plan, poll_seconds
        self._generation, self._report, self._apply_timeout = generation, report, apply_timeout
        self.generation = generation()  # the generation the registry's plans were made for
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether there is anything to watch (a poll interval, or a generation to follow)."""
        return self.poll_seconds > 0 or self._generation is not no_generation

    def start(self) -> None:
        """Start watching on a thread (idempotent; nothing when there is nothing to watch)."""
        with self._lock:
            if self._thread is None and self.active:
                self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop watching (the thread ends within a tick)."""
        self._stop.set()

    def check(self, poll_due: bool = True) -> bool:
        """One look: re-plan and apply when a poll is due or the generation changed; True when it applied."""
        generation = self._generation()
        changed = generation != self.generation
        if not (poll_due or changed):
            return False
        started = time.monotonic()
        try:
            plans = self._plan()
        except Exception:  # noqa: BLE001 - a scan that failed is retried at the next poll
            log.exception("re-planning the models failed")
            return False
        self._registry.apply(plans)
        if changed:
            self._registry.wait_applied(self._apply_timeout)
            self.generation = generation
            self._report(generation)
            log.info("applied control generation %s", generation,
                     extra={"generation": generation, "duration_s": round(time.monotonic() - started, 3)})
        return True

    def _run(self) -> None:
        following = self._generation is not no_generation
        next_poll = time.monotonic() + self.poll_seconds
        while True:
            wait = TICK_S if following else max(next_poll - time.monotonic(), 0.0)
            if self._stop.wait(wait):
                return
            due = self.poll_seconds > 0 and time.monotonic() >= next_poll
            self.check(poll_due=due)
            if due:
                next_poll = time.monotonic() + self.poll_seconds
