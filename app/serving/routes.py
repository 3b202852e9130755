"""Routes: per model, the servable version each kind of request gets, precomputed by the lifecycle thread.

A request resolves with a few dict lookups (`Route.default`, `Route.labels[label]`); the manager swaps a
model's whole `Route` (one dict assignment) whenever a state, the plan or another worker changed. A version
is routable once it is AVAILABLE here and everywhere in the instance; until a new target is routable the
route keeps the old one (and is `pending`: the manager checks again soon).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from app.serving.servable import ServableVersion
from app.serving.types import ModelPlan, ModelState

Routable = Callable[[ServableVersion], bool]
HOPEFUL = (ModelState.LOADING, ModelState.AVAILABLE)  # may still become routable
LEAVING = (ModelState.UNLOADING, ModelState.END)  # never routed to


@dataclass(frozen=True)
class Route:
    """Where one model's requests go: `default` (None: no routable version yet, the slow path decides) and
    each label's servable, or the label's version number while that version is not routable."""

    default: ServableVersion | None = None
    labels: Mapping[str, ServableVersion | int] = field(default_factory=dict)
    default_version: int | None = None  # the version named by default_version (for a 503 while it is not routable)
    pending: bool = False  # some target is not routable yet but may become so

    def label_versions(self) -> dict[str, int]:
        """label -> the version it routes to now (or waits for)."""
        return {label: target if isinstance(target, int) else target.version for label, target in self.labels.items()}


def compute_route(plan: ModelPlan, held: Mapping[int, ServableVersion], routable: Routable,
                  previous: Route | None) -> Route:
    """The route for `plan`, given the aspired servables `held` (version -> servable) and the previous route."""
    pending = False

    def target(version: int, before: ServableVersion | int | None) -> ServableVersion | int:
        nonlocal pending
        servable = held.get(version)
        if servable is not None and routable(servable):
            return servable
        pending = pending or (servable is not None and servable.state in HOPEFUL)
        if isinstance(before, ServableVersion) and held.get(before.version) is before \
                and before.state is ModelState.AVAILABLE:
            return before  # the old target serves until the new one is routable
        return version

    old_labels = previous.labels if previous is not None else {}
    labels = {label: target(version, old_labels.get(label)) for label, version in sorted(plan.labels.items())}
    if plan.default_version is not None:
        chosen = target(plan.default_version, previous.default if previous is not None else None)
        default = chosen if isinstance(chosen, ServableVersion) else None
    else:
        ready = [servable for _, servable in sorted(held.items()) if routable(servable)]
        default = ready[-1] if ready else None
        newest = default.version if default is not None else 0
        pending = pending or any(v > newest and s.state in HOPEFUL for v, s in held.items())
    return Route(default, labels, plan.default_version, pending)


def compute_routes(plans: Mapping[str, ModelPlan], models: Mapping[str, Mapping[int, ServableVersion]],
                   routable: Routable, previous: Mapping[str, Route]) -> dict[str, Route]:
    """Every planned model's route: over its aspired versions that are neither UNLOADING nor END."""
    routes = {}
    for name, plan in plans.items():
        versions = {source.version for source in plan.versions}
        held = {version: servable for version, servable in models.get(name, {}).items()
                if version in versions and servable.state not in LEAVING}
        routes[name] = compute_route(plan, held, routable, previous.get(name))
    return routes
