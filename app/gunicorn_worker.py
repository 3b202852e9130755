"""gunicorn's gthread worker, also telling the app what each request met in its queue.

Under overload, requests wait in the worker's thread-pool queue before any of our code runs,
so a queue inside the app never fills. This worker stamps each request when gunicorn queues
it and hands the app (`app.queue_wait`) the wait and the number still waiting behind it;
`app.api.admission` sheds inference requests with 429 before reading their body.
"""
from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker

from app.queue_wait import QueueState, set_queue_state


class QueueTimedThreadWorker(ThreadWorker):
    """gthread, plus the queue state of every request."""

    def enqueue_req(self, conn) -> None:
        work_queue = getattr(self.tpool, "_work_queue", None)  # ThreadPoolExecutor's queue of waiting requests
        conn.serving_queue = (time.monotonic(), work_queue.qsize() if work_queue is not None else 0)
        super().enqueue_req(conn)

    def handle(self, conn):
        queued = getattr(conn, "serving_queue", None)
        set_queue_state(None if queued is None else QueueState(waited=time.monotonic() - queued[0], ahead=queued[1]))
        return super().handle(conn)
