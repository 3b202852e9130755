"""Readiness for the instance, not the worker: every worker of one gunicorn master publishes its models'
states in a table in shared memory (`app.serving.readiness_table`), and any worker reads it to answer a
probe, or to tell whether a version is AVAILABLE in every worker (the routes' rule during a rollout).

The answer (`InstanceReadiness.answer`): not ready while draining (SIGTERM), with no model, until every
expected worker has settled with nothing holding it back; once the instance has been ready, a worker
gunicorn starts again does not count until it has settled (it accepts no connection meanwhile).
END versions (not aspired, or unloaded through the API) never count.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.serving.readiness_table import (  # noqa: F401 - re-exported: the table's users import it from here
    CODE_STATES,
    LOADING,
    MAX_VERSIONS,
    SETTLED,
    STATE_CODES,
    ReadinessTable,
    Slot,
    blocks,
    fingerprint,
    version_key,
)
from app.serving.types import ModelState

NO_MODEL = "SERVING_MODEL_DIR holds no model"
NOTHING_ASPIRED = "no model version is aspired: every version is END (unloaded or outside its version policy)"
AVAILABLE = STATE_CODES[ModelState.AVAILABLE]


@dataclass(frozen=True)
class Readiness:
    """An answer to a readiness probe: ready, what holds it back (and in how many workers), why."""

    ready: bool
    not_ready: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    workers: dict[str, int] | None = None

    def details(self) -> dict[str, Any]:
        """The body's fields besides the status: what is missing, the reason, the workers' counts."""
        out: dict[str, Any] = {} if self.ready else {"not_ready": self.not_ready}
        if self.reason:
            out["reason"] = self.reason
        if self.workers is not None:
            out["workers"] = self.workers
        return out


@dataclass(frozen=True)
class InstanceReadiness:
    """One worker's view of the table: it publishes its own slot and answers for every live worker."""

    table: ReadinessTable
    slot: int
    pid: int
    expected: int
    is_live: Callable[[int, int], bool]  # (slot, pid) -> whether that worker runs

    def publish(self, settled: bool, states: Sequence[tuple[str, int, ModelState]], strict: bool) -> None:
        """Publish this worker's states; when that made the instance ready, remember it."""
        self.table.publish(self.slot, self.pid, settled, states, strict, self.expected)
        if settled and not self.table.ready_once and self.answer(states, strict).ready:
            self.table.mark_ready_once()

    def answer(self, own: Sequence[tuple[str, int, ModelState]], strict: bool) -> Readiness:
        """The instance's readiness, naming with this worker's (model, version) list what is missing."""
        if self.table.draining:
            return Readiness(False, reason="shutting down (SIGTERM)")
        if not own:
            return Readiness(False, reason=NO_MODEL)
        ready_once = self.table.ready_once
        mine = {version_key(name, version): index for index, (name, version, state) in enumerate(own)
                if state is not ModelState.END}
        if not mine:
            return Readiness(False, reason=NOTHING_ASPIRED)
        live = self.live()
        settled = [slot for slot in live if slot.phase == SETTLED]
        counted = settled if ready_once else live
        alike = [slot for slot in counted if slot.count > MAX_VERSIONS or mine.keys() <= slot.states.keys()]
        missing: Counter[tuple[int, int]] = Counter()
        unnamed = 0
        for slot in alike:
            missing.update((index, slot.states[key]) for key, index in mine.items()
                           if key in slot.states and blocks(CODE_STATES[slot.states[key]], strict))
            if slot.count > MAX_VERSIONS:
                unnamed += slot.blocking - sum(blocks(CODE_STATES[code], strict) for code in slot.states.values())
        not_ready = [{"model": own[index][0], "version": own[index][1], "state": CODE_STATES[code].value,
                      "workers": count} for (index, code), count in sorted(missing.items())]
        other = len(counted) - len(alike)
        workers = {"expected": self.expected, "started": len(live), "loaded": len(settled)}
        reason = None
        if other:
            reason = f"{other} worker(s) aspire other model versions than this one"
        elif unnamed > 0:
            reason = f"{unnamed} more version(s) beyond the first {MAX_VERSIONS} are not ready"
        elif not settled or (not ready_once and len(settled) < self.expected):
            reason = f"{len(settled)} of {self.expected} workers have loaded their models"
        ready = reason is None and not not_ready
        return Readiness(ready, not_ready, reason, workers)

    def live(self) -> list[Slot]:
        """The slots of every live worker (this one included once it has published)."""
        return [slot for slot in self.table.read() if self.is_live(slot.index, slot.pid)]

    def available_everywhere(self, name: str, version: int) -> bool:
        """Whether `name` version `version` is AVAILABLE in every live worker that has settled (at least one).

        Read by the lifecycle thread while a route waits for its target (one copy of the table, ~0.1 ms),
        not per request."""
        key = version_key(name, version)
        settled = [slot for slot in self.live() if slot.phase == SETTLED]
        return bool(settled) and all(slot.states.get(key) == AVAILABLE for slot in settled)

    def publish_applied(self, generation: int) -> None:
        """Tell the API's waiting worker that this worker has applied control generation `generation`."""
        self.table.publish_applied(self.slot, generation)


def local_readiness(own: Sequence[tuple[str, int, ModelState]], strict: bool, settled: bool) -> Readiness:
    """Readiness of a lone process (no gunicorn table): its own versions only."""
    if not own:
        return Readiness(False, reason=NO_MODEL)
    if all(state is ModelState.END for _, _, state in own):
        return Readiness(False, reason=NOTHING_ASPIRED)
    not_ready = [{"model": name, "version": version, "state": state.value}
                 for name, version, state in own if blocks(state, strict)]
    return Readiness(settled and not not_ready, not_ready)
