"""Admission control: shed inference requests that waited too long for a worker thread.

A WSGI middleware in front of Flask (`app.wsgi_app`), so a shed request costs no Flask request
context, no body read and no JSON parse: a 429 has to be much cheaper than a 200, or under a
closed loop of clients the queue of 429s alone keeps every wait above the limit and nothing but
429s comes out. Health, metadata and readiness are never shed.

Like CoDel, it sheds a standing queue, not a burst: shedding starts only once waits have stayed
over the limit for a grace period (a wait within the limit restarts that clock), and within a
second of the last 429 it resumes at once.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

from app import errors
from app.api.responses import error_payload, style_for_path
from app.gunicorn.queue_wait import queue_wait
from app.observability.facts import note_error
from app.settings import Settings

INFERENCE_ENDPOINTS = frozenset({"native.predict", "tfserving.predict", "v2.model_infer"})
RESUME_WINDOW_S = 1.0  # within this long after a 429, the next wait over the limit is shed at once
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class LoadShedder:
    """Answer 429 `overloaded` (with Retry-After) to an inference request that waited longer than
    `max_queue_wait_ms` for a worker thread; pass every other request to `wsgi_app`.

    Nothing is shed while `loading()` is true: a worker still importing TensorFlow and loading
    models can hold the GIL for long stretches, which is not overload, and its requests wait for
    their model anyway (SERVING_LOADING_WAIT)."""

    def __init__(self, wsgi_app: WSGIApp, url_map: Map, settings: Settings, loading: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic):
        self.wsgi_app, self.url_map, self.settings = wsgi_app, url_map, settings
        self.loading, self.clock = loading, clock
        self.shed = 0  # requests answered 429 here, in this worker process
        self._lock = threading.Lock()
        self._over_since: float | None = None  # since when waits have been over the limit
        self._last_shed = float("-inf")

    def describe(self) -> dict[str, Any]:
        """The limit, the grace and how many requests this worker process has shed, for `GET /models`."""
        return {"max_queue_wait_ms": self.settings.max_queue_wait_ms,
                "queue_wait_grace_ms": self.settings.queue_wait_grace_ms, "shed_requests": self.shed}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        waited = queue_wait()
        limit_ms = self.settings.max_queue_wait_ms
        if waited is None or not limit_ms:
            return self.wsgi_app(environ, start_response)
        if waited * 1000.0 <= limit_ms:
            if self._over_since is not None:  # unlocked: a race only moves the grace clock a little
                self._over_since = None
            return self.wsgi_app(environ, start_response)
        if (environ.get("REQUEST_METHOD") != "POST" or self.loading() or not self._is_inference(environ)
                or not self._queue_stands()):
            return self.wsgi_app(environ, start_response)
        waited_ms = round(waited * 1000.0, 1)
        note_error("overloaded")
        error = errors.Overloaded(f"the request waited {waited_ms:.0f} ms for a worker (limit {limit_ms:g} ms); "
                                  "retry later", {"queue_wait_ms": waited_ms, "max_queue_wait_ms": limit_ms},
                                  retry_after=1)
        status, payload, headers = error_payload(error, style_for_path(environ.get("PATH_INFO", "")))
        body = orjson.dumps(payload)
        start_response(f"{status} Too Many Requests", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers.items()])
        return [body]

    def _queue_stands(self) -> bool:
        """Whether waits have stayed over the limit for the grace period, or a 429 went out just now
        (then count this request as shed)."""
        now = self.clock()
        with self._lock:
            if self._over_since is None:
                self._over_since = now
            if ((now - self._over_since) * 1000.0 < self.settings.queue_wait_grace_ms
                    and now - self._last_shed >= RESUME_WINDOW_S):
                return False
            self.shed += 1
            self._last_shed = now
            return True

    def _is_inference(self, environ: dict[str, Any]) -> bool:
        try:
            endpoint, _ = self.url_map.bind_to_environ(environ).match()
        except HTTPException:
            return False
        return endpoint in INFERENCE_ENDPOINTS
