"""How long the request on this thread waited for a worker thread (set by app.gunicorn.worker).

Kept apart from gunicorn so the app runs without it (tests, `flask run`): there the wait is None.
"""
from __future__ import annotations

import threading

_current = threading.local()


def set_queue_wait(seconds: float | None) -> None:
    """Record how long the request this thread is about to handle waited in the worker's queue."""
    _current.seconds = seconds


def queue_wait() -> float | None:
    """Seconds the current request waited for a free thread, if the server measured it."""
    return getattr(_current, "seconds", None)
