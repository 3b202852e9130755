"""ServingErrors as gRPC status codes, and the wrapper every RPC runs in (errors, token)."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import grpc

from app import errors

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
        """Raise Unauthorized when the call's token does not satisfy the rule for `path`."""
        authorization = next((value for key, value in context.invocation_metadata() if key == "authorization"), None)
        error = self.rule.refusal(path, authorization)
        if error is not None:
            raise error


def rpc(path: Callable[[Any], str] | None = None) -> Callable[[Method], Method]:
    """Wrap a servicer method: token check (when `path` names the REST route it stands for), errors as statuses."""
    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                if path is not None and self.guard.active:
                    self.guard.check(context, path(request))
                return method(self, request, context)
            except errors.ServingError as exc:
                if isinstance(exc, errors.Overloaded):
                    context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
                context.abort(status_code(exc), exc.message)
            except Exception:  # a bug: log it, answer INTERNAL without a traceback
                log.exception("unhandled error in gRPC %s", method.__name__)
                context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")
        return call
    return decorate
