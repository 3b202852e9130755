"""The manager: model name -> aspired versions -> servable version, with states and readiness.

It is given its sources (the aspired versions) and its loader; it knows nothing of TensorFlow.
Versions load in a background thread of each worker, started by gunicorn's `post_worker_init` hook
(or the first request), so liveness answers at once and a CLI command loads nothing. Under gunicorn
the worker attaches an `InstanceReadiness` (`app.serving.readiness`): the registry publishes to it
whenever a version settles, and readiness answers for every worker of the instance.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from app import errors
from app.serving.readiness import InstanceReadiness, Readiness, local_readiness
from app.serving.servable import Loader, ServableVersion
from app.serving.types import ModelSource, ModelState

log = logging.getLogger(__name__)


class ModelRegistry:
    """The manager: holds every aspired version, gives each to the loader, and answers which servable
    version a request should use (the version policy: the highest AVAILABLE, or the one asked for)."""

    def __init__(self, sources: Iterable[ModelSource], loader: Loader, *, default_model: str | None = None,
                 strict_readiness: bool = True, loading_wait: float = 30.0):
        self.default_model = default_model
        self.loading_wait = loading_wait
        self.strict_readiness = strict_readiness
        self._loader = loader
        self._models: dict[str, dict[int, ServableVersion]] = {}
        for source in sources:
            self._models.setdefault(source.name, {})[source.version] = ServableVersion(source)
        self._settled = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self.instance: InstanceReadiness | None = None
        self._on_settled: list[Any] = []  # callables run once every version has settled

    # -- loading -------------------------------------------------------------
    def start_loading(self) -> None:
        """Load every version in a background thread (idempotent, cheap once started)."""
        if self._thread is not None:
            return
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self.load_all, name="model-loader", daemon=True)
                thread.start()
                self._thread = thread

    def load_all(self) -> None:
        """Give every version to the loader in turn; each ends AVAILABLE or FAILED."""
        try:
            for servable in self.versions():
                try:
                    self._loader(servable)
                except Exception as exc:  # noqa: BLE001 - a loader bug must not leave the version LOADING
                    log.exception("loader failed on model %s version %s", servable.name, servable.version)
                    servable.state, servable.error = ModelState.FAILED, errors.reason_for(exc)
                finally:
                    servable.settled.set()
                    self.publish()
        finally:
            self._settled.set()
            self.publish()
            for callback in self._on_settled:
                callback()

    def when_settled(self, callback: Any) -> None:
        """Run `callback` (in the loading thread) once every version has settled; at once if done."""
        self._on_settled.append(callback)
        if self._settled.is_set():
            callback()

    def attach_instance(self, instance: InstanceReadiness) -> None:
        """Answer readiness for the instance from now on, and publish this worker's states to it."""
        self.instance = instance
        self.publish()

    def publish(self) -> None:
        """Tell the instance (if attached) this worker's states."""
        if self.instance is not None:
            self.instance.publish(self._settled.is_set(), self._states(), self.strict_readiness)

    def _states(self) -> list[tuple[str, int, ModelState]]:
        return [(servable.name, servable.version, servable.state) for servable in self.versions()]

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        """Start loading if nothing has (whoever waits wants the models), then block until no version
        is LOADING; True when that happened in time."""
        self.start_loading()
        return self._settled.wait(timeout)

    def close(self) -> None:
        """Stop every batcher: queued requests finish or fail, none hang."""
        for servable in self.versions():
            if servable.batcher is not None:
                servable.state = ModelState.UNLOADING
                servable.batcher.close()

    # -- lookup --------------------------------------------------------------
    def versions(self) -> list[ServableVersion]:
        """Every version of every model, by name then version."""
        return [v for name in sorted(self._models) for _, v in sorted(self._models[name].items())]

    def names(self) -> list[str]:
        """The served model names, sorted."""
        return sorted(self._models)

    def model_versions(self, name: str) -> list[ServableVersion]:
        """All versions of `name`, lowest first; ModelNotFound when unknown."""
        if name not in self._models:
            raise errors.ModelNotFound(f"model {name!r} is not served", {"model": name, "available": self.names()})
        return [v for _, v in sorted(self._models[name].items())]

    def get(self, name: str, version: int) -> ServableVersion:
        """Exactly this version, in whatever state; 404 when it does not exist."""
        versions = self._models.get(name)
        if versions is None:
            self.model_versions(name)
        if version not in versions:
            raise errors.VersionNotFound(f"model {name!r} has no version {version}",
                                         {"model": name, "version": version, "versions": sorted(versions)})
        return versions[version]

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

    def resolve(self, name: str | None, version: int | None) -> ServableVersion:
        """The AVAILABLE servable for a request: 404 unknown, 503 not available.

        A request for a version still LOADING (a worker that has just started) waits up to
        `loading_wait` seconds for it instead of failing at once.
        """
        name = name or self.default_model_name()
        servable = self.get(name, version) if version is not None else self._newest_candidate(name)
        if servable.state is ModelState.LOADING and servable.settled.wait(self.loading_wait) and version is None:
            servable = self._newest_candidate(name)
        if servable.state is not ModelState.AVAILABLE or servable.batcher is None:
            raise errors.ModelNotAvailable(
                f"model {name!r} version {servable.version} is {servable.state.value}",
                {"model": name, "version": servable.version, "state": servable.state.value,
                 **({"reason": servable.error} if servable.error else {})})
        return servable

    def _newest_candidate(self, name: str) -> ServableVersion:
        """The highest version that is AVAILABLE or may still become so."""
        candidates = self.model_versions(name)
        hopeful = [v for v in candidates if v.state in (ModelState.AVAILABLE, ModelState.LOADING)]
        return hopeful[-1] if hopeful else candidates[-1]

    def instance_readiness(self) -> Readiness:
        """Readiness of the whole instance (every worker) when attached, else of this process."""
        states = self._states()
        answer = (local_readiness(states, self.strict_readiness, self._settled.is_set()) if self.instance is None
                  else self.instance.answer(states, self.strict_readiness))
        reasons = {(s.name, s.version): s.error for s in self.versions() if s.error}
        for entry in answer.not_ready:  # this worker's reason, where it has one
            if reasons.get((entry["model"], entry["version"])):
                entry["error"] = reasons[(entry["model"], entry["version"])]
        return answer

    def model_readiness(self, name: str, version: int | None) -> tuple[int, list[dict[str, Any]]]:
        """(the version a request would get, what holds it back in any worker); 404 when unknown."""
        servable = self.get(name, version) if version is not None else self._newest_candidate(name)
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
        blocking = []
        for servable in self.versions():
            if servable.state is ModelState.AVAILABLE:
                continue
            if servable.state is ModelState.FAILED and not self.strict_readiness:
                continue
            blocking.append({"model": servable.name, **servable.summary()})
        return (not blocking and self._settled.is_set()), blocking

