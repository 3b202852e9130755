"""Request ids: every answer carries `X-Request-ID`, the client's own or a new one.

Set by a WSGI middleware around the whole app, so every answer gets it, the 429s of the load
shedder in front of Flask included, without a Flask `after_request` hook (about 7 us a request).
"""
from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterable
from typing import Any

ENVIRON_KEY = "serving.request_id"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _RequestIds:
    """New request ids: 16 random hex digits per process, then a 16-digit counter (32 in all).

    A uuid4 per request cost a system call for randomness on every answer; this stays unique
    across workers and restarts (the prefix is redrawn in every forked child).
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix, self.counter = secrets.token_hex(8), itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_REQUEST_IDS = _RequestIds()


def request_id_for(environ: dict[str, Any]) -> str:
    """This request's id: the one the middleware chose, else the client's usable X-Request-ID, else a new one."""
    chosen = environ.get(ENVIRON_KEY)
    if chosen is not None:
        return chosen
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    return incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else _REQUEST_IDS.next()


class TagRequestIds:
    """WSGI middleware: choose the request's id once and add it to the answer's headers."""

    def __init__(self, wsgi_app: WSGIApp):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        rid = environ[ENVIRON_KEY] = request_id_for(environ)

        def start_tagged(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("X-Request-ID", rid))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_tagged)
