"""The shared memory behind instance readiness and model control: a header and one slot per gunicorn worker.

Made in the master (`app.gunicorn.worker` creates it at import, before any fork), so every worker maps
the same memory. A worker writes only its own slot, the one it claimed in the connection table
(`app.gunicorn.table`), so no lock is taken: each field is one aligned 64-bit word, and a slot counts
only while the connection table says its worker is live.

Header: draining, ready once, workers expected, and the control generation (`app.serving.control`
bumps it, under the control file's lock, after each load or unload through the API). Slot: pid, phase
(LOADING until its registry first settled), how many versions it holds and how many hold readiness
back, a fingerprint of its aspired (model, version) set, the control generation it has applied, then
per version (the first `MAX_VERSIONS`) a pair (crc32 of "name/version", state code): workers whose
version lists differ (a rollout under way) are still read correctly.
"""
from __future__ import annotations

import multiprocessing
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.serving.types import ModelState

SLOTS = 64           # as many as the connection table
MAX_VERSIONS = 64    # versions named per worker (more are counted, not named)
_DRAINING, _READY_ONCE, _EXPECTED, _GENERATION = range(4)
_HEADER = 4
_PID, _PHASE, _COUNT, _BLOCKING, _FINGERPRINT, _APPLIED = range(6)
_PAIRS = 6
_SLOT_FIELDS = _PAIRS + 2 * MAX_VERSIONS
LOADING, SETTLED = 1, 2
STATE_CODES = {state: code for code, state in enumerate(ModelState, start=1)}
CODE_STATES = {code: state for state, code in STATE_CODES.items()}


def version_key(name: str, version: int) -> int:
    """The number a slot names one version by: crc32 of "name/version"."""
    return zlib.crc32(f"{name}/{version}".encode())


def fingerprint(keys: Iterable[tuple[str, int]]) -> int:
    """The same number in every worker that aspires the same set of (model, version)."""
    return zlib.crc32("\n".join(sorted(f"{name}/{version}" for name, version in keys)).encode())


def blocks(state: ModelState, strict: bool) -> bool:
    """Whether a version in `state` holds readiness back (FAILED only under strict readiness; END never)."""
    return state not in (ModelState.AVAILABLE, ModelState.END) and (strict or state is not ModelState.FAILED)


@dataclass(frozen=True)
class Slot:
    """What one worker published: its pid, phase, counts, fingerprint, applied generation and states by key."""

    index: int
    pid: int
    phase: int
    count: int
    blocking: int
    fingerprint: int
    applied: int
    states: dict[int, int]  # version_key -> state code


class ReadinessTable:
    """The shared memory: the header and one slot per worker."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._cells = multiprocessing.RawArray("q", _HEADER + _SLOT_FIELDS * slots)
        self._view = memoryview(self._cells).cast("B").cast("q")  # copied out at C speed

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

    def mark_ready_once(self) -> None:
        """Remember that the instance has been ready (workers started later hold their accepts)."""
        self._cells[_READY_ONCE] = 1

    def expected(self) -> int:
        """How many workers the instance runs (as the last worker to publish was told)."""
        return self._cells[_EXPECTED]

    @property
    def generation(self) -> int:
        """The control generation: how many loads and unloads the API has asked for (one read of shared memory)."""
        return self._cells[_GENERATION]

    def set_generation(self, generation: int) -> None:
        """(the control file's writer, under its lock) Tell every worker a new control state is there."""
        self._cells[_GENERATION] = generation

    def publish(self, slot: int, pid: int, settled: bool, states: Sequence[tuple[str, int, ModelState]],
                strict: bool, expected: int) -> None:
        """Write the caller's slot: its phase and its versions' states."""
        base = _HEADER + _SLOT_FIELDS * slot
        self._cells[_EXPECTED] = expected
        if self._cells[base + _PID] != pid:
            self._cells[base + _APPLIED] = 0  # a new worker in the slot has applied nothing yet
            self._cells[base + _PID] = pid
        for index, (name, version, state) in enumerate(states[:MAX_VERSIONS]):
            self._cells[base + _PAIRS + 2 * index] = version_key(name, version)
            self._cells[base + _PAIRS + 2 * index + 1] = STATE_CODES[state]
        self._cells[base + _COUNT] = len(states)
        self._cells[base + _BLOCKING] = sum(blocks(state, strict) for _, _, state in states)
        self._cells[base + _FINGERPRINT] = fingerprint(
            (name, version) for name, version, state in states if state is not ModelState.END)
        self._cells[base + _PHASE] = SETTLED if settled else LOADING

    def publish_applied(self, slot: int, generation: int) -> None:
        """Record that the worker in `slot` (the caller) has applied control generation `generation`."""
        self._cells[_HEADER + _SLOT_FIELDS * slot + _APPLIED] = generation

    def read(self, slots: Iterable[int] | None = None) -> list[Slot]:
        """Every slot (or those named) that holds a pid, as one consistent-enough copy."""
        cells = self._view.tolist()
        found = []
        for index in range(self.slots) if slots is None else slots:
            base = _HEADER + _SLOT_FIELDS * index
            if not cells[base + _PID]:
                continue
            count = min(cells[base + _COUNT], MAX_VERSIONS)
            pairs = cells[base + _PAIRS: base + _PAIRS + 2 * count]
            found.append(Slot(index, cells[base + _PID], cells[base + _PHASE], cells[base + _COUNT],
                              cells[base + _BLOCKING], cells[base + _FINGERPRINT], cells[base + _APPLIED],
                              dict(zip(pairs[::2], pairs[1::2]))))
        return found
