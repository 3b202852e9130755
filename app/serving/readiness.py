"""Readiness for the instance, not the worker: a table in shared memory where every worker of one
gunicorn master publishes its models' states, and which any worker reads to answer a probe.

The table is made in the master (`app.gunicorn.worker` creates it at import, before any fork), so every
worker maps the same memory. A worker writes only its own slot, the one it claimed in the connection
table (`app.gunicorn.table`), so no lock is taken: each field is one aligned 64-bit word, and a slot
counts only while the connection table says its worker is live. Layout: a header (draining, ready
once, workers expected), then per slot its pid, phase (LOADING until its registry has settled), how
many versions it aspires and how many hold readiness back, a fingerprint of its (model, version) list
and one state code per version (the first `MAX_VERSIONS`).

The answer (`InstanceReadiness.answer`): not ready while draining (SIGTERM), with no model, until every
expected worker has settled with nothing holding it back; once the instance has been ready, a worker
gunicorn starts again does not count until it has settled (it accepts no connection meanwhile).
"""
from __future__ import annotations

import multiprocessing
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.serving.types import ModelState

SLOTS = 64           # as many as the connection table
MAX_VERSIONS = 64    # versions named per worker (more are counted, not named)
_DRAINING, _READY_ONCE, _EXPECTED = range(3)
_HEADER = 3
_PID, _PHASE, _COUNT, _BLOCKING, _FINGERPRINT = range(5)
_SLOT_FIELDS = 5 + MAX_VERSIONS
LOADING, SETTLED = 1, 2
STATE_CODES = {state: code for code, state in enumerate(ModelState, start=1)}
CODE_STATES = {code: state for state, code in STATE_CODES.items()}
NO_MODEL = "SERVING_MODEL_DIR holds no model"


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


def blocks(state: ModelState, strict: bool) -> bool:
    """Whether a version in `state` holds readiness back (FAILED only under strict readiness)."""
    return state is not ModelState.AVAILABLE and (strict or state is not ModelState.FAILED)


def fingerprint(keys: Sequence[tuple[str, int]]) -> int:
    """The same number in every worker that aspires the same (model, version) list."""
    return zlib.crc32("\n".join(f"{name}/{version}" for name, version in keys).encode())


class ReadinessTable:
    """The shared memory: the header and one slot per worker."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._cells = multiprocessing.RawArray("q", _HEADER + _SLOT_FIELDS * slots)

    def set_draining(self) -> None:
        """Readiness answers 503 from now on (the master got SIGTERM)."""
        self._cells[_DRAINING] = 1

    @property
    def draining(self) -> bool:
        """Whether the instance is shutting down."""
        return bool(self._cells[_DRAINING])

    @property
    def ready_once(self) -> bool:
        """Whether the instance has been ready since the master started."""
        return bool(self._cells[_READY_ONCE])

    def publish(self, slot: int, pid: int, settled: bool, states: Sequence[tuple[str, int, ModelState]],
                strict: bool, expected: int) -> None:
        """Write the caller's slot: its phase and its versions' states."""
        base = _HEADER + _SLOT_FIELDS * slot
        self._cells[_EXPECTED] = expected
        self._cells[base + _PID] = pid
        for index, (_, _, state) in enumerate(states[:MAX_VERSIONS]):
            self._cells[base + 5 + index] = STATE_CODES[state]
        self._cells[base + _COUNT] = len(states)
        self._cells[base + _BLOCKING] = sum(blocks(state, strict) for _, _, state in states)
        self._cells[base + _FINGERPRINT] = fingerprint([(name, version) for name, version, _ in states])
        self._cells[base + _PHASE] = SETTLED if settled else LOADING

    def slot(self, slot: int) -> tuple[int, int, int, int, list[int]]:
        """(pid, phase, blocking, fingerprint, state codes) of one slot."""
        base = _HEADER + _SLOT_FIELDS * slot
        count = min(self._cells[base + _COUNT], MAX_VERSIONS)
        codes = list(self._cells[base + 5: base + 5 + count])
        return (self._cells[base + _PID], self._cells[base + _PHASE], self._cells[base + _BLOCKING],
                self._cells[base + _FINGERPRINT], codes)

    def mark_ready_once(self) -> None:
        """Remember that the instance has been ready (workers started later hold their accepts)."""
        self._cells[_READY_ONCE] = 1

    def expected(self) -> int:
        """How many workers the instance runs (as the last worker to publish was told)."""
        return self._cells[_EXPECTED]


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
        ready_once, mine = self.table.ready_once, fingerprint([(name, version) for name, version, _ in own])
        live = [(slot, *self.table.slot(slot)) for slot in range(self.table.slots)]
        live = [row for row in live if row[2] and self.is_live(row[0], row[1])]
        settled = [row for row in live if row[2] == SETTLED]
        counted = settled if ready_once else live
        alike = [row for row in counted if row[4] == mine]
        missing: Counter[tuple[int, int]] = Counter()
        for _, _, _, _, _, codes in alike:
            missing.update((index, code) for index, code in enumerate(codes)
                           if blocks(CODE_STATES[code], strict))
        not_ready = [{"model": own[index][0], "version": own[index][1], "state": CODE_STATES[code].value,
                      "workers": count} for (index, code), count in sorted(missing.items())]
        other = len(counted) - len(alike)
        unnamed = sum(row[3] for row in alike) - sum(missing.values())
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


def local_readiness(own: Sequence[tuple[str, int, ModelState]], strict: bool, settled: bool) -> Readiness:
    """Readiness of a lone process (no gunicorn table): its own versions only."""
    if not own:
        return Readiness(False, reason=NO_MODEL)
    not_ready = [{"model": name, "version": version, "state": state.value}
                 for name, version, state in own if blocks(state, strict)]
    return Readiness(settled and not not_ready, not_ready)
