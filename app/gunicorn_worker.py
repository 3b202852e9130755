"""gunicorn's gthread worker, also telling the app what each request met in its queue.

Under overload, requests wait in the worker's thread-pool queue before any of our code runs,
so a queue inside the app never fills. This worker stamps each request when gunicorn queues
it and hands the wait to the app (`app.queue_wait`); `app.api.admission` answers inference
requests that waited too long with 429 before Flask sees them.
"""
from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker

from app.queue_wait import set_queue_wait


class QueueTimedThreadWorker(ThreadWorker):
    """gthread, plus how long every request waited for a thread."""

    def enqueue_req(self, conn) -> None:
        conn.serving_queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn):
        queued_at = getattr(conn, "serving_queued_at", None)
        set_queue_wait(None if queued_at is None else time.monotonic() - queued_at)
        return super().handle(conn)
