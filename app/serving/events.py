"""The lifecycle's log lines: one per load, unload, label or default change, with model, version, worker
(pid) and duration_s as structured fields (`extra`: the JSON log lines carry them)."""
from __future__ import annotations

import logging
import os

from app.serving.routes import Route
from app.serving.servable import ServableVersion
from app.serving.types import ModelState

log = logging.getLogger("app.serving.manager")


def version_event(event: str, servable: ServableVersion, seconds: float, **fields: object) -> None:
    """The one line of a load or unload ("loaded", "unloaded": from the re-route, drain included), with the
    state it left and why."""
    level = logging.WARNING if servable.state is ModelState.FAILED else logging.INFO
    log.log(level, "model %s version %s %s: %s in %.2f s", servable.name, servable.version, event,
             servable.state.value, seconds,
             extra={"model": servable.name, "version": servable.version, "worker": os.getpid(),
                    "duration_s": round(seconds, 3), "event": event, "state": servable.state.value,
                    **({"reason": servable.error} if servable.error else {}), **fields})


def route_events(name: str, before: Route | None, route: Route) -> None:
    """One line for each label, and for the default, that now routes to another servable version."""
    old = before.labels if before is not None else {}
    for label, target in sorted(route.labels.items()):
        if isinstance(target, ServableVersion) and old.get(label) is not target:
            log.info("model %s label %s -> version %s", name, label, target.version,
                     extra={"model": name, "label": label, "version": target.version, "worker": os.getpid(),
                            "duration_s": 0.0, "event": "label"})
    if route.default is not None and (before is None or before.default is not route.default):
        log.info("model %s default -> version %s", name, route.default.version,
                 extra={"model": name, "version": route.default.version, "worker": os.getpid(),
                        "duration_s": 0.0, "event": "default"})
