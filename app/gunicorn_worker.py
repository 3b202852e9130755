"""gunicorn's gthread worker, telling the app what each request met in its queue and sharing
connections evenly with the other workers.

Under overload, requests wait in the worker's thread-pool queue before any of our code runs,
so a queue inside the app never fills. This worker stamps each request when gunicorn queues
it and hands the wait to the app (`app.queue_wait`); `app.api.admission` answers inference
requests that waited too long with 429 before Flask sees them.

Workers share one listening socket and the kernel wakes whichever it likes: in a burst of new
keep-alive connections one worker can take them all, and then serve them alone, on one core,
for as long as the clients stay (measured: 32 connections all on one of two workers for 15 s,
1.9k req/s instead of 4.6k). So each worker publishes how many connections it holds in a table
shared by all (created in the master, before the fork), and a worker holding more than one
connection more than the least loaded live worker waits a millisecond before accepting, which
lets that one take the connection. When the others have taken nothing for `MAX_DEFER_S` (busy,
or stuck), it stops deferring for `BUSY_PAUSE_S`: no connection waits more than that long for a
worker that will not come, and a large burst is not accepted at one connection per wait.
"""
from __future__ import annotations

import multiprocessing
import os
import time

from gunicorn.workers.gthread import ThreadWorker

from app.queue_wait import set_queue_wait

SLOTS = 64                # workers that can publish at once (more: the extra ones do not balance)
DEFER_S = 0.001           # how long a worker over its share waits before it looks again
MAX_DEFER_S = 0.005       # the longest a worker defers while the others take nothing
BUSY_PAUSE_S = 0.1        # then it accepts without deferring for this long
TOLERANCE = 1             # connections a worker may hold above the least loaded one

# (pid, open connections) per worker; created at import, i.e. in the master, and inherited by every worker.
_table = multiprocessing.RawArray("q", 2 * SLOTS)


def should_defer(own: int, others: list[int]) -> bool:
    """Whether a worker holding `own` connections lets the others (holding `others`) accept first."""
    return bool(others) and own > min(others) + TOLERANCE


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class QueueTimedThreadWorker(ThreadWorker):
    """gthread, plus how long every request waited for a thread, plus balanced accepts."""

    def init_process(self) -> None:
        self._slot = self._claim_slot()
        self._defer_until = 0.0
        self._deferring_since: float | None = None  # this run of deferrals (the others took nothing)
        self._last_deferral = float("-inf")
        self._eager_until = float("-inf")  # the others were busy: accept without deferring until then
        super().init_process()

    def _claim_slot(self) -> int | None:
        """A slot of the shared table for this worker: its own by spawn order (`age`, unique among
        live workers unless SLOTS spawns apart), else a free one or one a dead worker left."""
        preferred = getattr(self, "age", 0) % SLOTS
        for slot in (preferred, *range(SLOTS)):
            pid = _table[2 * slot]
            if pid == 0 or pid == os.getpid() or not _alive(pid):
                _table[2 * slot], _table[2 * slot + 1] = os.getpid(), 0
                return slot
        return None

    def _publish(self) -> None:
        if self._slot is not None:
            _table[2 * self._slot + 1] = self.nr_conns

    def _others(self) -> list[int]:
        """Open connections of the other live workers."""
        me = os.getpid()
        return [_table[2 * slot + 1] for slot in range(SLOTS)
                if _table[2 * slot] not in (0, me) and _alive(_table[2 * slot])]

    def accept(self, listener) -> None:
        now = time.monotonic()
        if self._slot is not None and now >= self._eager_until:
            if not should_defer(self.nr_conns, self._others()):
                self._deferring_since = None  # within its share (the others took what it left)
            else:
                if self._deferring_since is None or now - self._last_deferral > 3 * DEFER_S:
                    self._deferring_since = now  # a new run of deferrals
                if now - self._deferring_since < MAX_DEFER_S:
                    self._last_deferral, self._defer_until = now, now + DEFER_S
                    super().set_accept_enabled(False)
                    return
                self._eager_until, self._deferring_since = now + BUSY_PAUSE_S, None
        super().accept(listener)
        self._publish()

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and time.monotonic() >= self._defer_until)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        self._publish()  # connections closed since the last look
        remaining = self._defer_until - time.monotonic()
        if remaining > 0:  # wake when the deferral ends (gunicorn's loop then listens again)
            timeout = min(timeout, remaining)
        super().wait_for_and_dispatch_events(timeout)

    def enqueue_req(self, conn) -> None:
        conn.serving_queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn):
        queued_at = getattr(conn, "serving_queued_at", None)
        set_queue_wait(None if queued_at is None else time.monotonic() - queued_at)
        return super().handle(conn)
