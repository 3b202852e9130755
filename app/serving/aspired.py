"""Aspired versions: the difference between what the manager holds and what the source now plans.

`diff(models, incoming, plans, loading)` is pure: it returns the new table (model -> version -> servable),
the servables to give the loader (in order), the fresh servables that replace a held one once AVAILABLE
(`incoming`, for a version whose settings changed), and the held servables to re-route away from and unload.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from app.serving.routes import LEAVING
from app.serving.servable import ServableVersion
from app.serving.types import BatchingSettings, ModelPlan, ModelSource, ModelState

GONE = "no longer in the model folder"
NO_BATCHING = BatchingSettings(max_batch_size=0, max_batch_delay_ms=0, max_queue_rows=0, request_timeout=0)
Key = tuple[str, int]


@dataclass
class Changes:
    """What one apply() asks of the manager."""

    models: dict[str, dict[int, ServableVersion]]
    load: list[ServableVersion] = field(default_factory=list)
    incoming: dict[Key, ServableVersion] = field(default_factory=dict)
    remove: list[tuple[ServableVersion, str]] = field(default_factory=list)


def why_not(plan: ModelPlan | None, version: int) -> str:
    """Why `plan` does not aspire `version` (the source's reason, or: gone from the folder)."""
    return dict(plan.not_aspired).get(version, GONE) if plan is not None else GONE


def ended(name: str, version: int, why: str, source: ModelSource | None = None) -> ServableVersion:
    """A version listed but not aspired: END, with why."""
    source = source or ModelSource(name, version, None, NO_BATCHING)
    servable = ServableVersion(source, state=ModelState.END, error=why)
    servable.settled.set()
    return servable


def diff(models: Mapping[str, Mapping[int, ServableVersion]], incoming: Mapping[Key, ServableVersion],
         plans: Mapping[str, ModelPlan], loading: ServableVersion | None) -> Changes:
    """The changes that take `models` (and the fresh loads in `incoming`) to `plans`."""
    changes = Changes({}, incoming=dict(incoming))
    for name in sorted({*models, *plans}):
        plan = plans.get(name)
        held = dict(models.get(name, {}))
        aspired = {source.version: source for source in plan.versions} if plan is not None else {}
        why_not = dict(plan.not_aspired) if plan is not None else {}
        for version, servable in sorted(held.items()):
            if version in aspired:
                continue
            changes.incoming.pop((name, version), None)
            why = why_not.get(version, GONE)
            if servable.state is ModelState.END:
                servable.error = why
            elif servable.state is not ModelState.UNLOADING and servable is not loading:
                changes.remove.append((servable, why))
        for version, why in sorted(why_not.items()):
            if version not in held:
                held[version] = ended(name, version, why)
        for _, source in sorted(aspired.items()):
            _aspire(changes, held, source, loading)
        if plan is not None or any(servable.state is not ModelState.END for servable in held.values()):
            changes.models[name] = held
    return changes


def _aspire(changes: Changes, held: dict[int, ServableVersion], source: ModelSource,
            loading: ServableVersion | None) -> None:
    """One aspired version: load it when new, changed, or reload it beside the one serving."""
    key = (source.name, source.version)
    current = held.get(source.version)
    if current is not None and current.state not in LEAVING and same_load(current.source, source):
        changes.incoming.pop(key, None)  # (a reload asked for, then taken back: the held one stays)
        current.source = source  # (at most where its settings were read from changed: nothing to reload)
        return
    fresh = ServableVersion(source)
    replace_now = current is None or current.state in LEAVING or current.state is ModelState.FAILED or (
        current.state is ModelState.LOADING and current is not loading)
    if replace_now:
        changes.incoming.pop(key, None)
        held[source.version] = fresh
        changes.load.append(fresh)
        if current is not None and current.state is ModelState.LOADING:
            current.state, current.error = ModelState.END, "its settings changed before it loaded"
            current.settled.set()
        return
    waiting = changes.incoming.get(key)
    if waiting is None or waiting.source != source:
        changes.incoming[key] = fresh
        changes.load.append(fresh)


def same_load(held: ModelSource, wanted: ModelSource) -> bool:
    """Whether `wanted` loads exactly as `held` did (they may differ only in where the settings were read)."""
    return held == replace(wanted, config_path=held.config_path)


def plans_of(sources: Iterable[ModelSource]) -> dict[str, ModelPlan]:
    """Plans that aspire every one of `sources` (policy all, no labels)."""
    grouped: dict[str, list[ModelSource]] = {}
    for source in sources:
        grouped.setdefault(source.name, []).append(source)
    return {name: ModelPlan(name, tuple(sorted(found, key=lambda s: s.version)))
            for name, found in sorted(grouped.items())}
