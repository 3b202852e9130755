"""The table gunicorn's workers share to balance connections: one slot per worker holding its pid,
its start time and how many connections it holds open.

Created in the master (gunicorn imports the worker class there, before any fork), so every worker maps
the same memory and the same lock. A worker claims a free slot, or one a dead worker left, under that
lock, so two workers never take the same slot. A slot's worker counts as live only while a process with
its pid is a child of our master and started when the slot says: pids are reused, and `os.kill(pid, 0)`
succeeds for whatever process holds the pid now. Liveness is read from /proc (Linux); where there is no
/proc no slot is claimed and the workers accept as plain gthread does. Each process remembers what it
read of a slot's liveness for `LIVENESS_TTL_S` (or until the slot changes hands): the balancing asks
on every accept, and a read of /proc costs ~15 us where the cached answer costs well under one.
"""
from __future__ import annotations

import multiprocessing
import os
import time

SLOTS = 64             # workers that can publish at once (more: the extra ones do not balance)
CLAIM_TIMEOUT_S = 1.0  # a worker killed while claiming keeps the lock: the others then go without a slot
LIVENESS_TTL_S = 1.0   # how long a process trusts what it read of a slot's liveness
_PID, _STARTED, _CONNECTIONS = range(3)
_FIELDS = 3


def process_identity(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks after boot) of a running process, None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()  # the name, in parentheses, may hold spaces
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])  # fields 4 (ppid) and 22 (starttime) of proc(5)


class ConnectionTable:
    """Slots of (pid, start time, open connections) in shared memory, claimed under a shared lock."""

    def __init__(self, slots: int = SLOTS, claim_timeout: float = CLAIM_TIMEOUT_S) -> None:
        self.slots = slots
        self.claim_timeout = claim_timeout
        self._cells = multiprocessing.RawArray("q", _FIELDS * slots)
        self._lock = multiprocessing.Lock()
        self._view = memoryview(self._cells).cast("B").cast("q")  # the same memory, copied out at C speed
        self._liveness: dict[int, tuple[int, int, int, float, bool]] = {}  # slot -> (pid, started, master, at, live)

    def claim(self, preferred: int, master: int) -> int | None:
        """A slot for this process, a child of `master`: `preferred` if free or left by a dead worker,
        else the first such slot; None when every slot holds a live worker (or there is no /proc)."""
        me = os.getpid()
        self._liveness.clear()  # read every slot afresh: a slot a dead worker left is free
        identity = process_identity(me)
        if identity is None or not self._lock.acquire(timeout=self.claim_timeout):
            return None
        try:
            for slot in (preferred % self.slots, *range(self.slots)):
                if self._get(slot, _PID) == me or not self.is_live(slot, master):
                    self._set(slot, _PID, 0)  # a reader never pairs the new pid with the old start time
                    self._set(slot, _STARTED, identity[1])
                    self._set(slot, _CONNECTIONS, 0)
                    self._set(slot, _PID, me)
                    return slot
            return None
        finally:
            self._lock.release()

    def publish(self, slot: int, connections: int) -> None:
        """Record how many connections the worker in `slot` (the caller) holds open."""
        self._set(slot, _CONNECTIONS, connections)

    def others(self, slot: int, master: int) -> list[int]:
        """Open connections of every live worker of `master` except the one in `slot`."""
        cells = self._view.tolist()  # one copy (~2 us), not one shared-memory read per field
        return [cells[_FIELDS * other + _CONNECTIONS] for other, pid in enumerate(cells[_PID::_FIELDS])
                if pid and other != slot and self._live(other, pid, cells[_FIELDS * other + _STARTED], master)]

    def is_live(self, slot: int, master: int) -> bool:
        """Whether `slot` holds a running child of `master` that started when the slot says (read
        from /proc at most every LIVENESS_TTL_S while the slot keeps its pid and start time)."""
        pid, started = self._get(slot, _PID), self._get(slot, _STARTED)
        return pid != 0 and self._live(slot, pid, started, master)

    def _live(self, slot: int, pid: int, started: int, master: int) -> bool:
        now = time.monotonic()
        known = self._liveness.get(slot)
        if known is not None and known[:3] == (pid, started, master) and now - known[3] < LIVENESS_TTL_S:
            return known[4]
        live = process_identity(pid) == (master, started)
        self._liveness[slot] = (pid, started, master, now, live)
        return live

    def holds(self, slot: int, pid: int, master: int) -> bool:
        """Whether `slot` still belongs to the live worker `pid`."""
        return self._get(slot, _PID) == pid and self.is_live(slot, master)

    def _get(self, slot: int, field: int) -> int:
        return self._cells[_FIELDS * slot + field]

    def _set(self, slot: int, field: int, value: int) -> None:
        self._cells[_FIELDS * slot + field] = value
