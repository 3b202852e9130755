"""How long the request on this thread waited for a worker thread (set by app.gunicorn_worker).

Kept apart from gunicorn so the app runs without it (tests, `flask run`): there the wait is None.
"""
from __future__ import annotations

import threading

_current = threading.local()


def set_queue_wait(seconds: float | None) -> None:
    """Record the wait of the request this thread is about to handle."""
    _current.seconds = seconds


def queue_wait() -> float | None:
    """Seconds the current request waited between arriving and reaching a thread, if known."""
    return getattr(_current, "seconds", None)
