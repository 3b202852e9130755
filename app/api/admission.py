"""Admission control: answer 429 at once to inference requests that waited too long for a thread."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app

from app import errors
from app.queue_wait import queue_wait


def shed_when_late(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate an inference view: 429 `overloaded` before the body is read when the request
    waited longer than MAX_QUEUE_WAIT_MS for a worker thread (health and metadata are never shed)."""

    @functools.wraps(view)
    def admitted(*args: Any, **kwargs: Any) -> Any:
        waited = queue_wait()
        limit_ms = current_app.config["MAX_QUEUE_WAIT_MS"]
        if waited is not None and limit_ms and waited * 1000.0 > limit_ms:
            raise errors.Overloaded(
                f"the request waited {waited * 1000.0:.0f} ms for a worker (limit {limit_ms:g} ms); retry later",
                {"queue_wait_ms": round(waited * 1000.0, 1), "max_queue_wait_ms": limit_ms}, retry_after=1)
        return view(*args, **kwargs)

    return admitted
