"""JSON responses, and the one mapping from a ServingError to each surface's error answer."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import orjson
from flask import Flask, Request, Response, request
from flask.sessions import NullSession, SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app import errors
from app.api.request_ids import request_id_for
from app.observability.facts import note_error

log = logging.getLogger(__name__)

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_default(value: Any) -> Any:
    """orjson's fallback: numpy arrays and scalars as Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A response encoded with orjson (numpy arrays included)."""
    body = orjson.dumps(payload, default=json_default, option=JSON_OPTIONS)
    return Response(body, status=status, headers=headers, content_type="application/json")  # no charset to add


def error_style() -> str:
    """Which surface's error shape to use for this request: native, tfserving or v2."""
    return style_for_path(request.path)


def style_for_path(path: str) -> str:
    """Which surface's error shape a path uses: native, tfserving or v2."""
    if path.startswith("/v1/"):
        return "tfserving"
    if path == "/v2" or path.startswith("/v2/"):
        return "v2"
    return "native"


# TF Serving (/v1) and V2 (/v2) clients expect invalid arguments as 400 (gRPC INVALID_ARGUMENT):
# shape/dtype mismatches (422), too many rows and media-type problems become 400 there.
# 404, 405, 413 (body over the byte limit), 429, 503, 504 and 500 keep their status.
PROTOCOL_STATUS = {422: 400, 415: 400}


def error_payload(error: errors.ServingError, style: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The one mapping from a ServingError to (status, JSON payload, headers) for a surface's style."""
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, errors.Overloaded) else {}
    if style == "native":
        return error.status, error.to_dict(), headers
    status = 400 if isinstance(error, errors.TooManyRows) else PROTOCOL_STATUS.get(error.status, error.status)
    return status, {"error": error.message}, headers


def error_response(error: errors.ServingError) -> Response:
    """A ServingError as the Flask response of the current request's surface."""
    status, payload, headers = error_payload(error, error_style())
    note_error(error.code)
    return json_response(payload, status=status, headers=headers)


def http_error(exc: HTTPException) -> errors.ServingError:
    """Werkzeug's routing and body errors as ServingErrors."""
    mapping: dict[int, type[errors.ServingError]] = {
        404: errors.NotFound, 405: errors.MethodNotAllowed, 413: errors.PayloadTooLarge,
        415: errors.UnsupportedMediaType,
    }
    kind = mapping.get(exc.code or 500, errors.BadRequest if (exc.code or 500) < 500 else errors.InternalError)
    message = {404: f"no route for {request.method} {request.path}",
               405: f"{request.method} is not allowed on {request.path}"}.get(exc.code or 0, exc.description or "")
    error = kind(message)
    if exc.code and kind is errors.BadRequest:
        error.status = exc.code
    return error


def http_error_response(exc: HTTPException) -> Response:
    """Werkzeug's routing and body errors in the surface's shape; a 405 names the route's methods in `Allow`."""
    response = error_response(http_error(exc))
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response


def request_id() -> str:
    """The id of this request (from X-Request-ID, or a new one)."""
    return request_id_for(request.environ)


def internal_error(exc: BaseException) -> Response:
    """A bug: log the traceback with the request id; answer 500 without one."""
    rid = request_id()
    log.exception("unhandled error in %s %s (request id %s)", request.method, request.path, rid, exc_info=exc)
    return error_response(errors.InternalError("internal error; the server log has the details",
                                               {"request_id": rid}))


def options_response() -> Response:
    """OPTIONS on any route: the methods it allows, in the `Allow` header and as JSON."""
    adapter = request.url_rule and request.url_rule.map.bind_to_environ(request.environ)
    methods = sorted(adapter.allowed_methods()) if adapter else ["OPTIONS"]
    return json_response({"allow": methods}, headers={"Allow": ", ".join(methods)})


class NoSessions(SecureCookieSessionInterface):
    """Flask's session step for an API without cookies: one shared empty, read-only session, not a new
    one per request (and, being a null session, never saved)."""

    shared = NullSession()

    def open_session(self, app: Flask, request: Request) -> NullSession:
        """The shared null session."""
        return self.shared
