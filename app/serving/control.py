"""Model control (the API's load, unload and index), carried out by every worker of the instance.

gunicorn's workers are separate processes, each with its own registry, and the master runs none of our
code after the fork; so the shared state coordinates. The worker that takes a call validates it, writes
the new state to the control file under its lock (`app.serving.control_state`), bumps the generation in
shared memory (`ReadinessTable.generation`) and waits until every live worker has published, in its
readiness slot, that it applied that generation (each worker's lifecycle thread polls the counter,
re-plans with the file's overrides, applies, and writes its outcome to `results/<pid>.json` first).
A worker started later plans from the file at start. `LocalControl` does the same in one process.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app import errors
from app.serving.control_outcome import (
    ControlOutcome,
    failures_in,
    index_rows,
    raise_failures,
    results_of,
)
from app.serving.control_state import ControlState, read_result, read_state, update_state
from app.serving.model_settings import ModelSettings
from app.serving.readiness import InstanceReadiness
from app.serving.source import MODEL_SUFFIXES, NAME_PATTERN
from app.serving.types import ModelState
from app.settings import Settings, lower_first

POLL_S = 0.02  # how often the waiting worker reads the slots
Change = Callable[[dict[str, Any]], None]  # edits the control file's "models"


def check_name(model_dir: Path, name: str) -> None:
    """ModelNotFound unless SERVING_MODEL_DIR holds a folder or a model file for `name`."""
    found = NAME_PATTERN.match(name) and not name.startswith((".", "_")) and (
        (model_dir / name).is_dir() or any((model_dir / f"{name}{suffix}").is_file() for suffix in MODEL_SUFFIXES))
    if not found:
        raise errors.ModelNotFound(f"model {name!r} has no folder or file in the model folder", {"model": name})


def check_config(name: str, config: Any) -> dict[str, Any] | None:
    """The serving.json document of a load, validated (InvalidRequest with the reason; nothing changes)."""
    if config is None:
        return None
    if not isinstance(config, dict):
        raise errors.InvalidRequest("config must be a serving.json document (a JSON object)", {"model": name})
    try:
        ModelSettings.model_validate(config)
    except ValidationError as exc:
        reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {lower_first(e['msg'])}"
                           for e in exc.errors())
        raise errors.InvalidRequest(f"config is invalid: {reason}", {"model": name, "reason": reason}) from None
    return config


def load_change(name: str, config: dict[str, Any] | None) -> Change:
    """Load: clears an unload; `config` replaces serving.json until the next load (None: the file's)."""
    def change(models: dict[str, Any]) -> None:
        models.pop(name, None)
        if config is not None:
            models[name] = {"unloaded": False, "config": config}
    return change


def unload_change(name: str) -> Change:
    """Unload: no version of `name` aspired until the next load."""
    def change(models: dict[str, Any]) -> None:
        models[name] = {"unloaded": True, "config": None}
    return change


class ModelControl:
    """The control API's verbs, checked the same way in one process and across a gunicorn instance;
    `_apply` (a subclass's) carries a change out where it applies."""

    _settings: Settings

    def load(self, name: str, config: dict[str, Any] | None = None) -> ControlOutcome:
        """(Re)load `name` from its folder (in every worker), with `config` instead of its serving.json if given."""
        check_name(self._settings.model_dir, name)
        return self._apply(name, load_change(name, check_config(name, config)), loading=True)

    def unload(self, name: str) -> ControlOutcome:
        """Unload every version of `name` (in every worker) until the next load."""
        check_name(self._settings.model_dir, name)
        return self._apply(name, unload_change(name), loading=False)

    def _apply(self, name: str, change: Change, loading: bool) -> ControlOutcome:
        raise NotImplementedError


class LocalControl(ModelControl):
    """Model control of one process (flask run, tests): applies to its registry directly."""

    def __init__(self, registry: Any, settings: Settings, plan: Callable[[ControlState], Any],
                 state: ControlState | None = None) -> None:
        self._registry, self._settings, self._plan = registry, settings, plan
        self._state = state or ControlState()
        self._lock = threading.Lock()

    def index(self) -> list[dict[str, str]]:
        """Every version this process knows, with its state and reason."""
        return index_rows(self._registry)

    def state(self) -> ControlState:
        """What the API last set."""
        return self._state

    def _apply(self, name: str, change: Change, loading: bool) -> ControlOutcome:
        with self._lock:
            models = {key: dict(entry) for key, entry in self._state.models.items()}
            change(models)
            self._state = ControlState(self._state.generation + 1, models)
            self._registry.apply(self._plan(self._state))
            if not self._registry.wait_applied(self._settings.control_timeout):
                raise errors.DeadlineExceeded(
                    f"model {name!r}: not carried out within {self._settings.control_timeout:g} s",
                    {"model": name, "workers": [os.getpid()], "timeout": self._settings.control_timeout})
            failures = failures_in(os.getpid(), name, results_of(self._registry), loading)
            return raise_failures(ControlOutcome(not failures, self._state.generation, 1, failures), name)


class InstanceControl(ModelControl):
    """Model control of a gunicorn instance: written to the control file, carried out by every live worker."""

    def __init__(self, registry: Any, settings: Settings, readiness: InstanceReadiness,
                 claimed: Callable[[int], bool], runtime: Path) -> None:
        self._registry, self._settings, self._readiness = registry, settings, readiness
        self._claimed, self._runtime = claimed, runtime  # claimed(slot): a live worker holds that slot

    def index(self) -> list[dict[str, str]]:
        """This worker's versions; one another live worker left FAILED is UNAVAILABLE with its reason."""
        rows = index_rows(self._registry)
        for slot in self._readiness.live():
            if slot.pid == self._readiness.pid:
                continue
            results = (read_result(self._runtime, slot.pid) or {}).get("models", {})
            for row in rows:
                outcome = results.get(row["name"], {}).get(row["version"], {})
                if outcome.get("state") == ModelState.FAILED.value and row["state"] != "UNAVAILABLE":
                    row.update(state="UNAVAILABLE", reason=f"worker {slot.pid}: {outcome.get('error') or 'FAILED'}")
        return rows

    def state(self) -> ControlState:
        """What the API last set (the control file)."""
        return read_state(self._runtime)

    def _apply(self, name: str, change: Change, loading: bool) -> ControlOutcome:
        state = update_state(self._runtime, change, self._readiness.table.set_generation)
        workers = self._wait(name, state.generation)
        failures = [failure for pid in workers
                    for failure in failures_in(pid, name, (read_result(self._runtime, pid) or {}).get("models", {}),
                                               loading)]
        return raise_failures(ControlOutcome(not failures, state.generation, len(workers), failures), name)

    def _wait(self, name: str, generation: int) -> list[int]:
        """The pids of every live worker once each has applied `generation`; 504 naming those that did not."""
        timeout = self._settings.control_timeout
        deadline = time.monotonic() + timeout
        while True:
            slots = {slot.index: slot for slot in self._readiness.table.read()}
            done, pending = [], []
            for index in range(self._readiness.table.slots):
                if not self._claimed(index):
                    continue
                slot = slots.get(index)
                if slot is not None and self._readiness.is_live(index, slot.pid) and slot.applied >= generation:
                    done.append(slot.pid)
                else:  # not applied yet, or a worker starting in that slot (it has not published)
                    pending.append(slot.pid if slot is not None and self._readiness.is_live(index, slot.pid)
                                   else f"starting (slot {index})")
            if not pending:
                return sorted(done)
            if time.monotonic() >= deadline:
                raise errors.DeadlineExceeded(
                    f"model {name!r}: worker(s) {', '.join(map(str, pending))} did not carry out generation "
                    f"{generation} within {timeout:g} s", {"model": name, "generation": generation, "workers": pending,
                                              "timeout": timeout})
            time.sleep(POLL_S)
