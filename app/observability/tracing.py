"""OpenTelemetry traces, optional and off by default: a span per request, children for the queue wait and
the forward pass.

On only when `OTEL_TRACES_EXPORTER` names an exporter (`console`, `otlp`; `none` or unset: off) and
`SERVING_TRACES` is not false. `setup` runs in each worker after the fork (gunicorn's post_worker_init);
the SDK reads the other standard variables itself (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_TRACES_SAMPLER`, `OTEL_PROPAGATORS`, ...).
Off, opentelemetry is never imported and the request path reads one module attribute (`tracer is None`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from time import time_ns
from typing import Any

from app.observability.facts import RequestFacts, current

LOG = logging.getLogger(__name__)
tracer: Any = None  # the OpenTelemetry tracer once set up; None: traces are off
CARRIED_HEADERS = {"traceparent": "HTTP_TRACEPARENT", "tracestate": "HTTP_TRACESTATE", "baggage": "HTTP_BAGGAGE"}


def wanted_exporters(traces: bool, environ: dict[str, str] | None = None) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names (empty: traces off, also when `traces` is false)."""
    named = (os.environ if environ is None else environ).get("OTEL_TRACES_EXPORTER", "")
    names = [name.strip().lower() for name in named.split(",") if name.strip()]
    return [] if not traces or names in ([], ["none"]) else [name for name in names if name != "none"]


def setup(traces: bool) -> None:
    """(worker, after the fork) Set up the tracer provider from the OTEL_* variables, when traces are on."""
    exporters = wanted_exporters(traces)
    if not exporters:
        return
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()  # its Resource and sampler come from OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, ...
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(make_exporter(name)))
    install(provider)


def make_exporter(name: str) -> Any:
    """The span exporter OTEL_TRACES_EXPORTER names: `console`, or `otlp` (gRPC, or HTTP by the protocol)."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        if protocol.startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: this server knows `console`, `otlp` and `none`")


def install(provider: Any) -> None:
    """Trace requests with this tracer provider (also made global, so libraries' spans join ours)."""
    global tracer
    from opentelemetry import trace

    trace.set_tracer_provider(provider)
    tracer = provider.get_tracer("app")


def uninstall() -> None:
    """Stop tracing requests (the tests' clean-up)."""
    global tracer
    tracer = None


def start_request(environ: dict[str, Any]) -> tuple[Any, Any]:
    """Start the request's span, child of the client's W3C `traceparent` when it sent one; made current."""
    from opentelemetry import context, propagate, trace

    carrier = {name: environ[key] for name, key in CARRIED_HEADERS.items() if key in environ}
    parent = propagate.extract(carrier) if carrier else None
    span = tracer.start_span(f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}", context=parent,
                             kind=trace.SpanKind.SERVER, attributes={
                                 "http.request.method": environ.get("REQUEST_METHOD", ""),
                                 "url.path": environ.get("PATH_INFO", "")})
    return span, context.attach(trace.set_span_in_context(span))


def start_call(path: str, metadata: dict[str, str]) -> tuple[Any, Any]:
    """Start a gRPC call's span (`path`: /service/Method), child of a `traceparent` in its metadata; made current."""
    environ = {key: metadata[name] for name, key in CARRIED_HEADERS.items() if name in metadata}
    return start_request({**environ, "REQUEST_METHOD": "POST", "PATH_INFO": path})


def end_request(span: Any, token: Any, facts: RequestFacts) -> None:
    """End the request's span with what the request path learnt (model, version, rows, status)."""
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    attributes = {"http.response.status_code": int(facts.status[:3]), "model": facts.model,
                  "version": facts.version, "rows": facts.rows, "error.type": facts.error}
    span.set_attributes({key: value for key, value in attributes.items() if value is not None})
    if facts.status[0] == "5":
        span.set_status(Status(StatusCode.ERROR, facts.error))
    span.end()
    context.detach(token)


def trace_id_of(span: Any) -> str | None:
    """The span's trace id as 32 hex digits (the access line's `trace_id`)."""
    return None if span is None else format(span.get_span_context().trace_id, "032x")


def traced_submit(submit: Callable[[Any, int], Any], arrays: Any, rows: int) -> Any:
    """`submit(arrays, rows)` with two child spans: `queue` (waiting in the batch queue), `inference` (after)."""
    started = time_ns()
    try:
        return submit(arrays, rows)
    finally:
        ended = time_ns()
        waited = current().queue_seconds
        dequeued = started + int(waited * 1e9) if waited is not None else started
        tracer.start_span("queue", start_time=started, attributes={"rows": rows}).end(end_time=min(dequeued, ended))
        if waited is not None:
            tracer.start_span("inference", start_time=min(dequeued, ended), attributes={"rows": rows}).end(
                end_time=ended)
