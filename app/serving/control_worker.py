"""One worker's side of model control: come up in the state the API last set, then follow every change.

The factory plans the first load from `read_state(settings.runtime_dir)` (a worker gunicorn starts later
comes up as the API last set) and gives the watcher (`app.serving.watcher`) a `ControlLink`'s
`generation` and `report`: constant and a no-op in one process (`LocalControl` applies directly). Under
gunicorn, `attach_control` (called by the worker once its app is loaded) makes `app.extensions["control"]`
an `InstanceControl` and binds the link to a `WorkerControl`: the watcher then polls the generation in
shared memory (one read every tick), re-plans with the control file's overrides (`state()`), applies,
waits for `wait_applied`, and `report()` writes `results/<pid>.json` and publishes the generation in this
worker's readiness slot, which the worker waiting on the API call reads.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.serving.control import InstanceControl
from app.serving.control_outcome import results_of
from app.serving.control_state import ControlState, read_state, write_result
from app.serving.readiness import InstanceReadiness
from app.serving.version_policy import ModelOverride

Results = Mapping[str, Mapping[Any, Mapping[str, Any]]]  # model -> version -> {"state", "error"}


class WorkerControl:
    """This worker's link to the control state: the generation to follow, the overrides, the report back."""

    def __init__(self, runtime: Path, readiness: InstanceReadiness, registry: Any) -> None:
        self._runtime, self._readiness, self._registry = runtime, readiness, registry

    def generation(self) -> int:
        """The instance's control generation (shared memory: cheap to poll)."""
        return self._readiness.table.generation

    def state(self) -> ControlState:
        """The control file: what the API last set."""
        return read_state(self._runtime)

    def overrides(self) -> dict[str, ModelOverride]:
        """The models' overrides the API last set."""
        return self.state().overrides()

    def report(self, generation: int, results: Results | None = None) -> None:
        """Write this worker's outcome of `generation` (default: its registry's states), then publish it."""
        models = results_of(self._registry) if results is None else {
            name: {str(version): {"state": getattr(o.get("state"), "value", o.get("state")), "error": o.get("error")}
                   for version, o in versions.items()} for name, versions in results.items()}
        write_result(self._runtime, self._readiness.pid, generation, models)
        self._readiness.publish_applied(generation)


class ControlLink:
    """What the factory gives the watcher: the generation to follow and where to report, once bound."""

    def __init__(self) -> None:
        self.worker: WorkerControl | None = None

    def bind(self, worker: WorkerControl) -> None:
        """Follow `worker`'s generation and report to it from now on."""
        self.worker = worker

    def generation(self) -> int:
        """The instance's control generation (0 while unbound: one process)."""
        return 0 if self.worker is None else self.worker.generation()

    def report(self, generation: int) -> None:
        """Tell the instance this worker applied `generation` (nobody waits while unbound)."""
        if self.worker is not None:
            self.worker.report(generation)


def attach_control(app: Any, readiness: InstanceReadiness, claimed: Callable[[int], bool]) -> None:
    """(a gunicorn worker, its app loaded) Control for the whole instance, and this worker following it."""
    extensions = getattr(app, "extensions", {})
    settings, registry, link = extensions.get("settings"), extensions.get("registry"), extensions.get("control_link")
    if settings is None or registry is None or link is None or settings.runtime_dir is None:
        return
    extensions["control"] = InstanceControl(registry, settings, readiness, claimed, settings.runtime_dir)
    extensions["control_worker"] = worker = WorkerControl(settings.runtime_dir, readiness, registry)
    link.bind(worker)
