"""Admission control: 429 at once for inference requests that met a long queue for a worker thread."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app

from app import errors
from app.queue_wait import queue_state


def shed_when_late(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate an inference view: 429 `overloaded`, before the body is read, when at least
    MAX_QUEUE_ROWS requests were waiting for a worker thread as this one arrived (each counts as one row), or
    when this one waited longer than MAX_QUEUE_WAIT_MS. Health and metadata are never shed."""

    @functools.wraps(view)
    def admitted(*args: Any, **kwargs: Any) -> Any:
        state = queue_state()
        if state is not None:
            config = current_app.config
            if state.ahead >= config["MAX_QUEUE_ROWS"]:
                raise errors.Overloaded(
                    f"{state.ahead} requests were waiting for a worker when this one arrived "
                    f"(limit {config['MAX_QUEUE_ROWS']}); retry later",
                    {"waiting_requests": state.ahead, "max_queue_rows": config["MAX_QUEUE_ROWS"]}, retry_after=1)
            limit_ms = config["MAX_QUEUE_WAIT_MS"]
            if limit_ms and state.waited * 1000.0 > limit_ms:
                raise errors.Overloaded(
                    f"the request waited {state.waited * 1000.0:.0f} ms for a worker (limit {limit_ms:g} ms); "
                    "retry later", {"queue_wait_ms": round(state.waited * 1000.0, 1), "max_queue_wait_ms": limit_ms},
                    retry_after=1)
        return view(*args, **kwargs)

    return admitted
