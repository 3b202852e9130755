"""One worker's side of model control: come up in the state the API last set, then follow every change.

Under gunicorn (`attach_control`, called by the worker once its app is loaded) `app.extensions["control"]`
becomes an `InstanceControl`, and a `WorkerControl` follows the control generation: once the registry
first settled it reports the generation it planned from, then it polls the counter in shared memory
(one read every `POLL_S`) and on a change re-plans with the control file's overrides, `apply()`s the
plans, waits for `wait_applied`, writes `results/<pid>.json` and publishes the generation in its
readiness slot. The factory plans its first load from `read_state(settings.runtime_dir)` and keeps that
state in `app.extensions["control_state"]`; without it the first settle applies the file's overrides.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.serving.control import InstanceControl
from app.serving.control_outcome import results_of
from app.serving.control_state import ControlState, ModelOverride, read_state, write_result
from app.serving.readiness import InstanceReadiness
from app.settings import Settings

log = logging.getLogger(__name__)
POLL_S = 0.02  # how often a worker reads the control generation
Plan = Callable[[ControlState], Any]  # the control state -> the plans for registry.apply


def planner(settings: Settings) -> Plan:
    """The source's plans for a control state: every model of SERVING_MODEL_DIR with the state's overrides."""
    def plan(state: ControlState) -> Any:
        from app.serving.source import plan_models  # type: ignore[attr-defined]  # the source's planner

        return plan_models(settings.model_dir, settings, state.overrides())
    return plan


class WorkerControl:
    """This worker's link to the control state: the generation to follow, the overrides, the report back."""

    def __init__(self, runtime: Path, readiness: InstanceReadiness, registry: Any, plan: Plan,
                 timeout: float) -> None:
        self._runtime, self._readiness, self._registry, self._plan = runtime, readiness, registry, plan
        self._timeout = timeout
        self.applied = -1  # the generation this worker last reported
        self._stopped = threading.Event()

    def generation(self) -> int:
        """The instance's control generation (shared memory: cheap to poll)."""
        return self._readiness.table.generation

    def state(self) -> ControlState:
        """The control file: what the API last set."""
        return read_state(self._runtime)

    def overrides(self) -> dict[str, ModelOverride]:
        """The models' overrides the API last set."""
        return self.state().overrides()

    def report(self, generation: int, results: Mapping[str, Mapping[Any, Mapping[str, Any]]] | None = None) -> None:
        """Write this worker's outcome of `generation` (default: its registry's states), then publish it."""
        models = results_of(self._registry) if results is None else {
            name: {str(version): {"state": getattr(o.get("state"), "value", o.get("state")), "error": o.get("error")}
                   for version, o in versions.items()} for name, versions in results.items()}
        write_result(self._runtime, self._readiness.pid, generation, models)
        self._readiness.publish_applied(generation)
        self.applied = max(self.applied, generation)

    def apply(self, state: ControlState) -> None:
        """Carry out `state` in this worker, then report it."""
        started = time.monotonic()
        self._registry.apply(self._plan(state))
        if not self._registry.wait_applied(self._timeout):
            log.warning("control generation %d not settled within %.0f s", state.generation, self._timeout)
        self.report(state.generation)
        log.info("applied control generation %d", state.generation,
                 extra={"generation": state.generation, "duration_s": round(time.monotonic() - started, 3)})

    def start(self, planned: ControlState | None) -> None:
        """(the registry first settled) Report the generation planned from, then follow the counter."""
        try:
            if planned is None:  # the first plan ignored the file: apply it now if it overrides anything
                planned = self.state()
                if planned.models:
                    self.apply(planned)
            self.report(planned.generation)
        except Exception:  # noqa: BLE001 - the follower below retries; a load must not kill the loading thread
            log.exception("could not apply the control state")
        threading.Thread(target=self.follow, name="model-control", daemon=True).start()

    def follow(self) -> None:
        """Apply every new control generation, until `stop()`."""
        while not self._stopped.wait(POLL_S):
            if self.generation() > self.applied:
                try:
                    self.apply(self.state())
                except Exception:  # noqa: BLE001 - logged; the API times out naming this worker
                    log.exception("could not apply control generation %d", self.generation())
                    self._stopped.wait(1.0)

    def stop(self) -> None:
        """Follow no more (the worker is stopping)."""
        self._stopped.set()


def attach_control(app: Any, readiness: InstanceReadiness, claimed: Callable[[int], bool]) -> None:
    """(a gunicorn worker, its app loaded) Control for the whole instance, and this worker following it."""
    extensions = getattr(app, "extensions", {})
    settings, registry = extensions.get("settings"), extensions.get("registry")
    if settings is None or registry is None or settings.runtime_dir is None or not hasattr(registry, "apply"):
        return
    extensions["control"] = InstanceControl(registry, settings, readiness, claimed, settings.runtime_dir)
    worker = WorkerControl(settings.runtime_dir, readiness, registry, planner(settings), settings.control_timeout)
    extensions["control_worker"] = worker
    registry.when_settled(lambda: worker.start(extensions.get("control_state")))
