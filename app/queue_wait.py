"""What the request on this thread met in the worker's queue (set by app.gunicorn_worker).

Kept apart from gunicorn so the app runs without it (tests, `flask run`): there both are None.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

_current = threading.local()


@dataclass(frozen=True)
class QueueState:
    """Seconds this request waited in the worker's queue for a free thread."""

    waited: float


def set_queue_state(state: QueueState | None) -> None:
    """Record the queue state of the request this thread is about to handle."""
    _current.state = state


def queue_state() -> QueueState | None:
    """The current request's queue state, if the server measured it."""
    return getattr(_current, "state", None)
