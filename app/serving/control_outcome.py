"""The outcome of a load or unload through the control API: what each worker reported, as the API answers it.

Each worker writes, per model and version, {"state", "error"} (`results_of`, into `results/<pid>.json`);
the worker that took the call reads every live worker's and turns FAILED versions into one
`ModelLoadFailed` (400, as Triton answers a failed load) naming the worker, model, version and error.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app import errors
from app.serving.types import ModelState

REPOSITORY_STATES = {ModelState.AVAILABLE: "READY", ModelState.LOADING: "LOADING", ModelState.UNLOADING: "UNLOADING",
                     ModelState.FAILED: "UNAVAILABLE", ModelState.END: "UNAVAILABLE"}


@dataclass(frozen=True)
class ControlOutcome:
    """A load or unload every live worker carried out: the generation, how many workers, what failed."""

    ok: bool
    generation: int
    workers: int
    failures: list[dict[str, Any]] = field(default_factory=list)


def results_of(registry: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """This worker's outcome, per model and version: {"state", "error"}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for servable in registry.versions():
        out.setdefault(servable.name, {})[str(servable.version)] = {"state": servable.state.value,
                                                                    "error": servable.error}
    return out


def failures_in(worker: int, name: str, results: Mapping[str, Any], loading: bool) -> list[dict[str, Any]]:
    """The versions of `name` a worker left FAILED (or, after a load, not settled)."""
    failed = []
    for version, outcome in sorted(results.get(name, {}).items(), key=lambda item: int(item[0])):
        state = outcome.get("state")
        if state == ModelState.FAILED.value or (loading and state in ("LOADING", "UNLOADING")):
            failed.append({"worker": worker, "model": name, "version": int(version),
                           "error": outcome.get("error") or f"still {state}"})
    return failed


def index_rows(registry: Any) -> list[dict[str, str]]:
    """Triton's repository index of this worker: name, version, state (END is UNAVAILABLE), reason."""
    return [{"name": v.name, "version": str(v.version), "state": REPOSITORY_STATES[v.state], "reason": v.error or ""}
            for v in registry.versions()]


def raise_failures(outcome: ControlOutcome, name: str) -> ControlOutcome:
    """The outcome, or ModelLoadFailed naming each worker, model, version and error."""
    if outcome.ok:
        return outcome
    failed = "; ".join(f"version {f['version']} in worker {f['worker']}: {f['error']}" for f in outcome.failures)
    raise errors.ModelLoadFailed(
        errors.one_line(f"model {name!r} failed to load: {failed}", limit=1000),
        {"model": name, "generation": outcome.generation, "workers": outcome.workers, "failures": outcome.failures})
