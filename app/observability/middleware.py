"""One WSGI middleware for the metrics and the access line of every request.

It wraps the whole app (outside the request ids, the tokens and the load shedder), so every answer
is counted and logged, a 429 of the shedder too. The rest of the request path notes what it learns
in this thread's `RequestFacts` (app.observability.facts); this reads them once the app answered.
Only inference requests are counted in `keras_serve_requests_total` and its histograms; explanations
in `keras_serve_explain_*` (kept out of the prediction latency). gRPC calls (app.api.grpc.status.rpc)
go through `record_call` of `observer`, the one the app factory made.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

from app.api.request_ids import ENVIRON_KEY
from app.gunicorn.queue_wait import queue_wait
from app.observability import facts as request_facts
from app.observability import metrics, tracing
from app.observability.facts import RequestFacts
from app.observability.request_metrics import RequestMetrics

observer: ObserveRequests | None = None  # the app's observer, for the gRPC calls of its worker
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ACCESS_LOG = logging.getLogger("app.access")


def explain_protocol_of(method: str, path: str) -> str | None:
    """The surface of an explanation request (native, tfserving), None for any other request."""
    if method != "POST":
        return None
    if path == "/explain":
        return "native"
    return "tfserving" if path.startswith("/v1/models/") and path.endswith(":explain") else None


def protocol_of(method: str, path: str) -> str | None:
    """The surface of an inference request (native, tfserving, v2), None for any other request."""
    if method != "POST":
        return None
    if path == "/predict":
        return "native"
    if path.startswith("/v1/models/"):
        return "tfserving" if path.endswith(":predict") else None
    if path.startswith("/v2/models/"):
        return "v2" if path.endswith("/infer") else None
    return None


class ObserveRequests:
    """WSGI middleware: metrics of inference requests and, when on, one access line per request."""

    def __init__(self, wsgi_app: WSGIApp, *, metrics: bool, access_log: bool, json_lines: bool):
        self.wsgi_app = wsgi_app
        self.metrics = RequestMetrics() if metrics else None
        self.access_log, self.json_lines = access_log, json_lines
        if access_log:
            ACCESS_LOG.setLevel(logging.INFO)  # SERVING_ACCESS_LOG decides, whatever SERVING_LOG_LEVEL says
        global observer
        observer = self  # the gRPC calls of this worker are observed by it too

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = perf_counter()
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        protocol = protocol_of(method, path)
        if protocol is not None and self.metrics is not None and not self.access_log and tracing.tracer is None:
            return self._counted(protocol, environ, start_response, started)
        return self._observed(method, path, protocol, environ, start_response, started)

    def _counted(self, protocol: str, environ: dict[str, Any], start_response: Callable[..., Any],
                 started: float) -> Iterable[bytes]:
        """An inference request with metrics alone on (the common case): `_observed` in fewer steps."""
        facts = request_facts.begin()
        facts.protocol = protocol

        def start_observed(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            facts.status, facts.headers = status, headers
            return start_response(status, headers, exc_info)

        metrics.TALLY.begin()
        try:
            body = self.wsgi_app(environ, start_observed)
        except BaseException:
            facts.status = "500 INTERNAL SERVER ERROR"
            self.metrics.record(protocol, facts, perf_counter() - started)  # type: ignore[union-attr]
            raise
        finally:
            request_facts.end()
        self.metrics.record(protocol, facts, perf_counter() - started)  # type: ignore[union-attr]
        return body

    def _observed(self, method: str, path: str, protocol: str | None, environ: dict[str, Any],
                  start_response: Callable[..., Any], started: float) -> Iterable[bytes]:
        """Any request: counted when inference or an explanation, traced, logged, as switched on."""
        explaining = False
        if protocol is None:
            protocol = explain_protocol_of(method, path)
            explaining = protocol is not None
        counted = self.metrics if protocol is not None else None
        record = None if counted is None else counted.record_explain if explaining else counted.record
        traced = tracing.tracer is not None
        if counted is None and not self.access_log and not traced:
            return self.wsgi_app(environ, start_response)
        facts = request_facts.begin()
        facts.protocol = protocol
        span, token = tracing.start_request(environ) if traced else (None, None)

        def start_observed(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            facts.status, facts.headers = status, headers
            return start_response(status, headers, exc_info)

        if counted is not None and not explaining:
            metrics.TALLY.begin()  # in flight: inference requests only
        try:
            body = self.wsgi_app(environ, start_observed)
        except BaseException:
            if record is not None:
                facts.status = "500 INTERNAL SERVER ERROR"
                record(protocol, facts, perf_counter() - started)  # type: ignore[arg-type]
            raise
        finally:
            request_facts.end()
            if span is not None:
                tracing.end_request(span, token, facts)
        seconds = perf_counter() - started
        if record is not None:
            record(protocol, facts, seconds)  # type: ignore[arg-type]  # set with record
        if self.access_log:
            self.write_access_line(environ, facts, seconds, tracing.trace_id_of(span))
        return body

    def write_access_line(self, environ: dict[str, Any], facts: RequestFacts, seconds: float,
                          trace_id: str | None = None) -> None:
        """One line: JSON fields in json mode, the same facts as `key=value` words in text mode."""
        waited = queue_wait()
        line = {
            "request_id": environ.get(ENVIRON_KEY), "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"), "protocol": facts.protocol, "explain_method": facts.explain_method,
            "status": int(facts.status[:3]), "model": facts.model,
            "version": facts.version, "rows": facts.rows, "duration_ms": round(seconds * 1000.0, 3),
            "queue_ms": None if facts.queue_seconds is None else round(facts.queue_seconds * 1000.0, 3),
            "wait_ms": None if waited is None else round(waited * 1000.0, 3),
            "bytes_in": _int_or_none(environ.get("CONTENT_LENGTH")),
            "bytes_out": _int_or_none(next((v for k, v in facts.headers if k.lower() == "content-length"), None)),
            "remote_addr": environ.get("REMOTE_ADDR"), "user_agent": environ.get("HTTP_USER_AGENT"),
            "error": facts.error, "trace_id": trace_id,
        }
        self.write_line(line)

    def record_call(self, facts: RequestFacts, counted: bool, seconds: float, line: Callable[[], dict]) -> None:
        """A gRPC call answered: counted as protocol grpc when `counted`, and its access line (`line()`)."""
        if counted and self.metrics is not None:
            self.metrics.record("grpc", facts, seconds)
        if self.access_log:
            self.write_line(line())

    def write_line(self, line: dict[str, Any]) -> None:
        """Log one access line: JSON fields in json mode, `key=value` words in text mode."""
        if self.json_lines:
            ACCESS_LOG.info("%s %s %s", line["method"], line["path"], line["status"], extra=line)
        else:
            ACCESS_LOG.info("%s", " ".join(f"{key}={_word(value)}" for key, value in line.items() if value is not None))


def _word(value: Any) -> str:
    """A value of a text access line, quoted when it holds a space."""
    text = str(value)
    return f'"{text}"' if " " in text else text


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
