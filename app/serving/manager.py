"""The manager's lifecycle: one background thread per worker carries out every `apply(plans)`.

`apply` hands the plans to the lifecycle thread and returns. The thread diffs them against what it holds
(`app.serving.aspired`), gives new versions to the loader one at a time (on a short-lived loading thread, so
it keeps ticking), swaps a reloaded version in once it is AVAILABLE, re-routes (`app.serving.routes`) before
it drains and unloads a version (`app.serving.unload`), and re-checks routes waiting for other workers every
`TICK_S`. Readers never lock: the table and the routes are replaced whole (one assignment each).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from app.serving import aspired, events, unload
from app.serving.load_queue import LoadQueue
from app.serving.routes import Route, compute_routes
from app.serving.servable import Loader, ServableVersion
from app.serving.types import ModelPlan, ModelState

log = logging.getLogger(__name__)
TICK_S = 0.05  # how often pending routes and drains are checked
StateHook = Callable[[str, int, ModelState], None]  # (model, version, state): metrics.publish_state


class Manager:
    """Holds the table (model -> version -> servable) and the routes, and changes them in its thread."""

    def __init__(self, plans: Mapping[str, ModelPlan], loader: Loader, on_state: StateHook | None = None):
        self._on_state = on_state or (lambda name, version, state: None)
        self._drains = unload.Drains(self._state_changed)
        self._models: dict[str, dict[int, ServableVersion]] = {}
        self._routes: dict[str, Route] = {}
        self._plans: dict[str, ModelPlan] = {}
        self._incoming: dict[aspired.Key, ServableVersion] = {}
        self._cond = threading.Condition()
        self._loads = LoadQueue(loader, self._wake)
        self._wanted: dict[str, ModelPlan] | None = None
        self._applied, self._settled = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._stopped, self._on_settled = False, []  # callbacks run once, when everything first settled
        self.instance: Any = None
        self._take(dict(plans))

    # -- the public side ------------------------------------------------------
    def apply(self, plans: Mapping[str, ModelPlan]) -> None:
        """Aim at `plans` (model name -> plan): the lifecycle thread loads, swaps and unloads to match."""
        with self._cond:
            self._wanted = dict(plans)
            self._applied.clear()
            self._cond.notify_all()

    def wait_applied(self, timeout: float | None = None) -> bool:
        """True once everything the last apply() started has settled in this worker (loaded, failed, unloaded)."""
        self.start_loading()
        return self._applied.wait(timeout)

    def start_loading(self) -> None:
        """Start the lifecycle thread (idempotent, cheap once started)."""
        if self._thread is not None:
            return
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="model-lifecycle", daemon=True)
                thread.start()
                self._thread = thread

    def when_settled(self, callback: Any) -> None:
        """Run `callback` (on a thread of its own) once every version has first settled; at once if done."""
        with self._cond:
            done = self._settled.is_set()
            if not done:
                self._on_settled.append(callback)
        if done:
            callback()

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        """Start loading if nothing has, then block until the first plans have settled; True when in time."""
        self.start_loading()
        return self._settled.wait(timeout)

    def close(self) -> None:
        """Stop the lifecycle thread and every batcher: queued requests finish or fail, none hang."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        held = [servable for versions in self._models.values() for servable in versions.values()]
        for servable in {id(s): s for s in [*held, *self._incoming.values(), *self._drains.servables()]}.values():
            if servable.batcher is not None and hasattr(servable.batcher, "close"):
                servable.state = ModelState.UNLOADING
                servable.batcher.close()

    def publish(self) -> None:
        """Tell the instance (if attached) this worker's states (the registry does)."""

    def _state_changed(self, servable: ServableVersion, state: ModelState) -> None:
        """Publish a leaving servable's state, unless another servable now holds its version (a reload)."""
        if self._models.get(servable.name, {}).get(servable.version, servable) is servable:
            self._on_state(servable.name, servable.version, state)

    def routable(self, servable: ServableVersion) -> bool:
        """AVAILABLE here and, with an instance attached, in every worker of it."""
        if servable.state is not ModelState.AVAILABLE or servable.batcher is None or servable is self._loads.loading:
            return False  # (a load is routed once the lifecycle thread has taken it in)
        everywhere = getattr(self.instance, "available_everywhere", None)
        return everywhere is None or everywhere(servable.name, servable.version)

    # -- the lifecycle thread -------------------------------------------------
    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                if self._wanted is None:
                    idle = not (self._loads or self._incoming or self._drains)
                    if idle:
                        self._settle_applied()
                    pending = any(route.pending for route in self._routes.values())
                    self._cond.wait(TICK_S if not idle or pending else None)
                wanted, self._wanted = self._wanted, None
            try:
                if wanted is not None:
                    self._take(wanted)
                self._step()
            except Exception:  # noqa: BLE001 - the lifecycle thread must survive a bug in one step
                log.exception("model lifecycle step failed")
                time.sleep(TICK_S)

    def _settle_applied(self) -> None:
        """(Lock held, idle.) Mark the last apply done; the first time, start the settled callbacks."""
        if self._applied.is_set():
            return
        self._applied.set()
        if not self._settled.is_set():
            self._settled.set()
            self._loads.gentle = True  # later loads run beside live traffic
            self.publish()
            callbacks, self._on_settled = self._on_settled, []  # on their own thread: one may apply() and wait
            threading.Thread(target=lambda: [callback() for callback in callbacks], name="models-settled",
                             daemon=True).start()

    def _take(self, plans: dict[str, ModelPlan]) -> None:
        """Diff `plans` in: new table, loads queued, removed versions re-routed and handed to drains."""
        changes = aspired.diff(self._models, self._incoming, plans, self._loads.loading)
        self._plans, self._models, self._incoming = plans, changes.models, changes.incoming
        self._loads.add(changes.load)
        for servable, why in changes.remove:
            self._drains.retire(servable, why)
        self._reroute()

    def _step(self) -> None:
        """One tick: settle a finished load, start the next, re-route, drain."""
        finished = self._loads.finished()
        if finished is not None:
            self._loaded(*finished)
        self._loads.start_next(self._wanted_load)
        self._reroute()
        self._drains.tick()
        if not self._drains:  # a model gone from the folder leaves the table once all of it has ended
            self._models = {name: held for name, held in self._models.items()
                            if name in self._plans or any(s.state is not ModelState.END for s in held.values())}
        self.publish()

    def _wanted_load(self, servable: ServableVersion) -> bool:
        """Whether a queued servable is still the one the table or a reload waits for."""
        return (self._models.get(servable.name, {}).get(servable.version) is servable
                or self._incoming.get((servable.name, servable.version)) is servable)

    def _loaded(self, servable: ServableVersion, seconds: float) -> None:
        """A load finished: keep it, swap it in for the version it reloads, or retire it (no longer wanted)."""
        events.version_event("loaded", servable, seconds)
        key = (servable.name, servable.version)
        plan = self._plans.get(servable.name)
        wanted = plan is not None and any(source == servable.source for source in plan.versions)
        held = self._models.get(servable.name, {}).get(servable.version)
        if self._incoming.get(key) is servable:
            del self._incoming[key]
            if servable.state is ModelState.AVAILABLE and held is not None:
                self._models = {**self._models, servable.name: {**self._models[servable.name],
                                                                servable.version: servable}}
                self._reroute()  # re-route first, then drain the one it replaces
                self._drains.retire(held, "replaced by a fresh load of its settings")
            elif held is not None:  # the one serving stays; the failure is said on it
                held.error = f"reload failed: {servable.error}"
        elif held is not servable or not wanted:
            self._drains.retire(servable, aspired.why_not(plan, servable.version))

    def _reroute(self) -> None:
        """Recompute every model's route (one assignment); log each label or default that moved."""
        routes = compute_routes(self._plans, self._models, self.routable, self._routes)
        for name, route in routes.items():
            events.route_events(name, self._routes.get(name), route)
        self._routes = routes
