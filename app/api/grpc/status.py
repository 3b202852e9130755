"""ServingErrors as gRPC status codes, and the wrapper every RPC runs in (errors, token, metrics, access line)."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

import grpc

from app import errors
from app.observability import facts as request_facts
from app.observability import metrics, middleware, tracing

log = logging.getLogger(__name__)

# By HTTP status; 413 for the rows limit is an invalid argument, as /v2 answers 400 for it.
STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT, 422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED, 500: grpc.StatusCode.INTERNAL,
}

Method = Callable[[Any, Any, grpc.ServicerContext], Any]
# The inference RPCs, counted in keras_serve_requests_total{protocol="grpc"} like POST /predict.
INFERENCE_RPCS = frozenset({"ModelInfer", "Predict"})
SERVICE_OF = {"InferenceServicer": "inference.GRPCInferenceService",
              "PredictionServicer": "tensorflow.serving.PredictionService",
              "ModelServicer": "tensorflow.serving.ModelService",
              "RepositoryServicer": "inference.GRPCInferenceService"}


def status_code(error: errors.ServingError) -> grpc.StatusCode:
    """The gRPC status of a ServingError."""
    if isinstance(error, errors.TooManyRows):
        return grpc.StatusCode.INVALID_ARGUMENT
    return STATUS_CODES.get(error.status, grpc.StatusCode.INTERNAL if error.status >= 500
                            else grpc.StatusCode.INVALID_ARGUMENT)


class TokenGuard:
    """The REST token rule for gRPC calls: the `authorization` metadata, judged by the path a call stands for."""

    def __init__(self, rule: Any | None):
        self.rule = rule  # app.api.auth.RequireTokens, or None where no token is ever needed
        self.active = rule is not None and rule.require_all

    def check(self, context: grpc.ServicerContext, path: str) -> None:
        """Raise Unauthorized (or ManagementDisabled) when the call's token does not satisfy the rule for `path`."""
        if self.rule is None:  # no rule at all: management stays closed, as with no token configured
            raise errors.ManagementDisabled("management_disabled: no token is configured")
        authorization = next((value for key, value in context.invocation_metadata() if key == "authorization"), None)
        error = self.rule.refusal(path, authorization)
        if error is not None:
            raise error


def rpc(path: Callable[[Any], str] | None = None, management: bool = False) -> Callable[[Method], Method]:
    """Wrap a servicer method: token check (when `path` names the REST route it stands for; always for a
    `management` one, else under SERVING_REQUIRE_TOKEN), errors as statuses, and, when the app observes
    requests, the metrics and the access line of the call (`observed`)."""
    def decorate(method: Method) -> Method:
        counted = method.__name__ in INFERENCE_RPCS

        @functools.wraps(method)
        def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            observer = middleware.observer
            if observer is None:
                return answer(self, request, context)
            return observed(observer, counted, method.__name__, answer, self, request, context)

        def answer(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                if path is not None and (management or self.guard.active):
                    self.guard.check(context, path(request))
                return method(self, request, context)
            except errors.ServingError as exc:
                if isinstance(exc, errors.Overloaded):
                    context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
                request_facts.current().error, request_facts.current().status = exc.code, f"{exc.status} "
                context.abort(status_code(exc), exc.message)
            except Exception:  # a bug: log it, answer INTERNAL without a traceback
                log.exception("unhandled error in gRPC %s", method.__name__)
                context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")
        return call
    return decorate


def observed(observer: Any, counted: bool, name: str, answer: Method, servicer: Any, request: Any,
             context: grpc.ServicerContext) -> Any:
    """Run one call with request facts, counted (`counted`) and logged by the app's observer.

    The code label is HTTP-like: 200 for OK, else the HTTP status REST answers for the same ServingError
    (see STATUS_CODES: 400 INVALID_ARGUMENT, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, ...;
    413 for too many rows, which gRPC answers INVALID_ARGUMENT), 500 for an unhandled error (INTERNAL).
    """
    started = perf_counter()
    facts = request_facts.begin()
    facts.protocol, facts.status = "grpc", "500 "
    path = f"/{SERVICE_OF.get(type(servicer).__name__, type(servicer).__name__)}/{name}"
    span = token = None
    if tracing.tracer is not None:  # a span per call, as per HTTP request (child spans: queue, inference)
        span, token = tracing.start_call(path, dict(context.invocation_metadata()))
    counting = counted and observer.metrics is not None
    if counting:
        metrics.TALLY.begin()
    try:
        response = answer(servicer, request, context)
        facts.status = "200 "
        return response
    finally:
        request_facts.end()
        if span is not None:
            tracing.end_request(span, token, facts)
        observer.record_call(facts, counting, perf_counter() - started,
                             lambda: access_line(facts, path, context, perf_counter() - started,
                                                 tracing.trace_id_of(span)))


def access_line(facts: request_facts.RequestFacts, path: str, context: grpc.ServicerContext, seconds: float,
                trace_id: str | None = None) -> dict[str, Any]:
    """The access line of one call: the WSGI line's fields, path the full method name, protocol grpc."""
    metadata = dict(context.invocation_metadata())
    peer = context.peer()  # ipv4:127.0.0.1:5000, ipv6:[::1]:5000
    return {
        "request_id": metadata.get("x-request-id"), "method": "POST",
        "path": path, "protocol": "grpc",
        "explain_method": None, "status": int(facts.status[:3]), "model": facts.model, "version": facts.version,
        "rows": facts.rows, "duration_ms": round(seconds * 1000.0, 3),
        "queue_ms": None if facts.queue_seconds is None else round(facts.queue_seconds * 1000.0, 3),
        "wait_ms": None, "bytes_in": None, "bytes_out": None,
        "remote_addr": peer.split(":", 1)[1].rsplit(":", 1)[0].strip("[]") if ":" in peer else peer,
        "user_agent": metadata.get("user-agent"), "error": facts.error, "trace_id": trace_id,
    }
