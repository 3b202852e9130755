"""The registry: model name -> version -> servable, which servable answers a request, and readiness.

It is the manager (`app.serving.manager`: `apply(plans)`, the lifecycle thread) seen from the request path:
`resolve()` is a few dict lookups on the precomputed routes (`app.serving.routes`); only a request before
anything is routable takes the slow path (the highest version AVAILABLE here, waiting `loading_wait` for one
still LOADING, as a worker that has just started does). Under gunicorn the worker attaches an
`InstanceReadiness` (`app.serving.readiness`): the registry publishes its states to it, routes wait for
versions to be AVAILABLE in every worker, and readiness answers for the instance.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app import errors
from app.serving.aspired import plans_of
from app.serving.manager import Manager, StateHook
from app.serving.readiness import InstanceReadiness, Readiness, local_readiness
from app.serving.rollout_readiness import excuse_rollouts
from app.serving.routes import LEAVING, Route
from app.serving.servable import Loader, ServableVersion
from app.serving.types import ModelPlan, ModelSource, ModelState


class ModelRegistry(Manager):
    """The manager with its lookups: which servable version a request gets, and what readiness answers."""

    def __init__(self, sources: Iterable[ModelSource], loader: Loader, *, plans: Mapping[str, ModelPlan] | None = None,
                 default_model: str | None = None, strict_readiness: bool = True, loading_wait: float = 30.0,
                 on_state: StateHook | None = None):
        self.default_model = default_model
        self.loading_wait = loading_wait
        self.strict_readiness = strict_readiness
        super().__init__(plans_of(sources) if plans is None else plans, loader, on_state)

    @classmethod
    def from_plans(cls, plans: Mapping[str, ModelPlan], loader: Loader, **kwargs: Any) -> ModelRegistry:
        """A registry aiming at `plans` (the source's, with version policies and labels)."""
        return cls((), loader, plans=plans, **kwargs)

    def attach_instance(self, instance: InstanceReadiness) -> None:
        """Answer readiness for the instance from now on, and publish this worker's states to it."""
        self.instance = instance
        self.publish()

    def publish(self) -> None:
        """Tell the instance (if attached) this worker's states."""
        if self.instance is not None:
            self.instance.publish(self._settled.is_set(), self._states(), self.strict_readiness)

    def _states(self) -> list[tuple[str, int, ModelState]]:
        """(model, version, state) of every aspired version (UNLOADING and END ones are on their way out)."""
        return [(s.name, s.version, s.state) for s in self.versions() if s.state not in LEAVING]

    # -- lookup --------------------------------------------------------------
    def versions(self) -> list[ServableVersion]:
        """Every version of every model (END ones too), by name then version."""
        models = self._models
        return [v for name in sorted(models) for _, v in sorted(models[name].items())]

    def names(self) -> list[str]:
        """The served model names, sorted."""
        return sorted(self._models)

    def model_versions(self, name: str) -> list[ServableVersion]:
        """All versions of `name`, lowest first; ModelNotFound when unknown."""
        versions = self._models.get(name)
        if versions is None:
            raise errors.ModelNotFound(f"model {name!r} is not served", {"model": name, "available": self.names()})
        return [v for _, v in sorted(versions.items())]

    def get(self, name: str, version: int) -> ServableVersion:
        """Exactly this version, in whatever state; 404 when it does not exist."""
        versions = self._models.get(name)
        if versions is None:
            self.model_versions(name)
        if version not in versions:
            raise errors.VersionNotFound(f"model {name!r} has no version {version}",
                                         {"model": name, "version": version, "versions": sorted(versions)})
        return versions[version]

    def route(self, name: str) -> Route | None:
        """The model's current route (None when it is not planned)."""
        return self._routes.get(name)

    def default_model_name(self) -> str:
        """The model a request without `model` goes to."""
        if self.default_model:
            return self.default_model
        if len(self._models) == 1:
            return next(iter(self._models))
        available = sorted(n for n, vs in self._models.items()
                           if any(v.state is ModelState.AVAILABLE for v in vs.values()))
        if len(available) == 1:
            return available[0]
        raise errors.InvalidRequest("name the model: more than one is served", {"models": self.names()})

    def resolve(self, name: str | None, version: int | None = None, label: str | None = None) -> ServableVersion:
        """The AVAILABLE servable for a request (by route, version or label): 404 unknown, 503 not available."""
        name = name or self.default_model_name()
        if label is not None:
            if version is not None:
                raise errors.InvalidRequest("name a version or a label, not both",
                                            {"model": name, "version": version, "label": label})
            return self._by_label(name, label)
        if version is None:
            route = self._routes.get(name)
            if route is not None and route.default is not None:
                return route.default
            servable = self._fallback(name, route)
        else:
            servable = self.get(name, version)
        if servable.state is ModelState.LOADING and servable.settled.wait(self.loading_wait) and version is None:
            servable = self._fallback(name, self._routes.get(name))
        return _available(servable)

    def _fallback(self, name: str, route: Route | None) -> ServableVersion:
        """(No routable default.) The default version if set, else the highest AVAILABLE here or LOADING."""
        if route is not None and route.default_version is not None:
            return self.get(name, route.default_version)
        candidates = [v for v in self.model_versions(name) if v.state not in LEAVING] or self.model_versions(name)
        if not candidates:
            raise errors.ModelNotAvailable(f"model {name!r} has no version to serve", {"model": name})
        hopeful = [v for v in candidates if v.state in (ModelState.AVAILABLE, ModelState.LOADING)]
        return hopeful[-1] if hopeful else candidates[-1]

    def _by_label(self, name: str, label: str) -> ServableVersion:
        route = self._routes.get(name)
        target = route.labels.get(label) if route is not None else None
        if target is None:
            self.model_versions(name)
            raise errors.LabelNotFound(f"model {name!r} has no label {label!r}",
                                       {"model": name, "label": label, "labels": sorted(route.labels if route else ())})
        if isinstance(target, ServableVersion):
            return target
        servable = self._models.get(name, {}).get(target)
        if servable is not None and servable.state is ModelState.LOADING:
            servable.settled.wait(self.loading_wait)
        if servable is None or servable.state is not ModelState.AVAILABLE or servable.batcher is None:
            state = servable.state.value if servable is not None else ModelState.END.value
            raise errors.ModelNotAvailable(
                f"label {label!r} of model {name!r} is version {target}, which is {state}",
                {"model": name, "label": label, "version": target, "state": state,
                 **({"reason": servable.error} if servable is not None and servable.error else {})})
        return servable

    # -- readiness -----------------------------------------------------------
    def instance_readiness(self) -> Readiness:
        """Readiness of the whole instance (every worker) when attached, else of this process."""
        states = self._states()
        answer = (local_readiness(states, self.strict_readiness, self._settled.is_set()) if self.instance is None
                  else self.instance.answer(states, self.strict_readiness))
        reasons = {(s.name, s.version): s.error for s in self.versions() if s.error and s.state not in LEAVING}
        for entry in answer.not_ready:  # this worker's reason, where it has one
            if reasons.get((entry["model"], entry["version"])):
                entry["error"] = reasons[(entry["model"], entry["version"])]
        return excuse_rollouts(answer, self._routes, self._settled.is_set())

    def model_readiness(self, name: str, version: int | None) -> tuple[int, list[dict[str, Any]]]:
        """(the version a request would get, what holds it back in any worker); 404 when unknown."""
        route = self._routes.get(name)
        servable = self.get(name, version) if version is not None else (
            route.default if route is not None and route.default is not None else self._fallback(name, route))
        held = [entry for entry in self.instance_readiness().not_ready
                if (entry["model"], entry["version"]) == (name, servable.version)]
        if servable.state is not ModelState.AVAILABLE and not held:
            held = [{"model": name, **servable.summary()}]
        return servable.version, held

    def instance_states(self) -> dict[tuple[str, int], ModelState]:
        """(model, version) -> the state holding it back in some worker, for versions not ready everywhere."""
        return {(entry["model"], entry["version"]): ModelState(entry["state"])
                for entry in self.instance_readiness().not_ready}

    def readiness(self) -> tuple[bool, list[dict[str, Any]]]:
        """(ready, versions holding readiness back) of this process alone."""
        blocking = [{"model": s.name, **s.summary()} for s in self.versions()
                    if s.state not in (ModelState.AVAILABLE, *LEAVING)
                    and (s.state is not ModelState.FAILED or self.strict_readiness)]
        return (not blocking and self._settled.is_set()), blocking


def _available(servable: ServableVersion) -> ServableVersion:
    """`servable` when AVAILABLE, else 503 naming its state and reason."""
    if servable.state is not ModelState.AVAILABLE or servable.batcher is None:
        raise errors.ModelNotAvailable(
            f"model {servable.name!r} version {servable.version} is {servable.state.value}",
            {"model": servable.name, "version": servable.version, "state": servable.state.value,
             **({"reason": servable.error} if servable.error else {})})
    return servable

