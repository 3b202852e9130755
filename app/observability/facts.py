"""What the request path learns about the request on this thread (model, version, rows, queue time,
error code), for the metrics and the access line written once it is answered.

`ObserveRequests` starts a `RequestFacts` per request on the request's thread; the data plane, the
batcher and the error responses fill it in with one call each (a few hundred nanoseconds). Outside
an observed request (a CLI command, a unit test calling the data plane) the notes go nowhere.
"""
from __future__ import annotations

import threading


class RequestFacts:
    """The facts of one request; None where nothing was learnt."""

    __slots__ = ("model", "version", "rows", "queue_seconds", "error", "status", "headers", "explain_method",
                 "protocol")

    def __init__(self) -> None:
        self.model: str | None = None
        self.version: int | None = None
        self.rows: int | None = None
        self.queue_seconds: float | None = None  # in its model's batch queue (0.0: it ran at once)
        self.error: str | None = None  # the error code of the answer
        self.status = "500 INTERNAL SERVER ERROR"
        self.headers: list[tuple[str, str]] = []
        self.explain_method: str | None = None  # integrated_gradients, saliency or gradient_x_input
        self.protocol: str | None = None  # native, tfserving, v2 or grpc (None: not inference or explain)


_NOWHERE = RequestFacts()  # notes outside an observed request land here and are never read
_local = threading.local()


def begin() -> RequestFacts:
    """New facts for the request this thread now serves."""
    facts = _local.facts = RequestFacts()
    return facts


def end() -> None:
    """This thread's request is answered: later notes go nowhere."""
    _local.facts = _NOWHERE


def current() -> RequestFacts:
    """The facts of the request this thread serves."""
    return getattr(_local, "facts", _NOWHERE)


def note_servable(model: str, version: int) -> None:
    """The request resolved to this model version."""
    facts = current()
    facts.model, facts.version = model, version


def note_rows(rows: int) -> None:
    """The request carries this many rows."""
    current().rows = rows


def note_error(code: str) -> None:
    """The request is answered with this error code."""
    current().error = code


def note_explain_method(method: str) -> None:
    """The explanation runs with this attribution method."""
    current().explain_method = method
