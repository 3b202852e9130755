"""Reading JSON requests and writing JSON responses, errors included, in one place."""
from __future__ import annotations

import json
import logging
import zlib
from typing import Any

import numpy as np
import orjson
from flask import Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_content_length

from app import errors
from app.api.request_ids import request_id_for
from app.api.tensor_json import decode_tensor_body

log = logging.getLogger(__name__)

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
# Bytes that JSON numbers and arrays are made of. Deleting them leaves keys, strings and literals,
# where `true` reads `tru` and `false` reads `fals` (their `e` is deleted too): a scan of that short
# remainder costs a quarter of scanning the whole body twice.
_NUMERIC_BYTES = b"0123456789.eE+-,:[] \t\r\n"
_BODY_KEY = "serving.body"


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A response encoded with orjson (numpy arrays included)."""
    body = orjson.dumps(payload, default=_default, option=JSON_OPTIONS)
    return Response(body, status=status, headers=headers, mimetype="application/json")


def request_body() -> bytes:
    """The raw body, decompressed when Content-Encoding says gzip or deflate; 413 past the limit."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    environ = request.environ
    length = get_content_length(environ)
    if length is not None and length > limit:
        raise errors.PayloadTooLarge(f"the body of {length} bytes exceeds the limit of {limit}", {"limit": limit})
    raw = _read_body(environ, length)
    encoding = (environ.get("HTTP_CONTENT_ENCODING") or "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "deflate"):
        raise errors.UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)",
                                          code="unsupported_content_encoding")
    window = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    decompressor = zlib.decompressobj(window)
    try:
        body = decompressor.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise errors.BadRequest(f"the body is not valid {encoding}: {exc}", code="invalid_encoding") from None
    if len(body) > limit or decompressor.unconsumed_tail:
        raise errors.PayloadTooLarge(f"the decompressed body exceeds the limit of {limit} bytes", {"limit": limit})
    return body


def _read_body(environ: dict[str, Any], length: int | None) -> bytes:
    """The body (kept in the environ), in one read when its length is known: reading a large body
    in 64 KiB steps made the server copy what it had read ahead on every step (about 2 ms for 1 MB)."""
    body = environ.get(_BODY_KEY)
    if body is None:
        if length is not None and "HTTP_TRANSFER_ENCODING" not in environ:
            body = environ["wsgi.input"].read(length)
        else:
            body = request.get_data(cache=True)
        environ[_BODY_KEY] = body
    return body


def parse_json(body: bytes) -> tuple[Any, bool]:
    """(decoded JSON, whether it may hold booleans). NaN/Infinity and bad JSON answer 400."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _json_error(body, exc) from None
    return data, _may_hold_booleans(body)


def _may_hold_booleans(body: bytes) -> bool:
    """Whether the JSON text may hold `true`/`false` (then tensors are checked for booleans)."""
    rest = body.translate(None, _NUMERIC_BYTES)
    return b"tru" in rest or b"fals" in rest


def read_json(*, require_content_type: bool = True) -> tuple[Any, bool]:
    """Decode the request body as JSON (415 when it does not say JSON)."""
    if require_content_type and not _says_json(request.environ):
        raise errors.UnsupportedMediaType(
            f"send the body as application/json (got {request.mimetype or 'no Content-Type'})",
            {"content_type": request.mimetype or None})
    body = request_body()
    decoded = decode_tensor_body(body)  # one plain numeric tensor: straight into numpy, no booleans
    return (decoded, False) if decoded is not None else parse_json(body)


def _says_json(environ: dict[str, Any]) -> bool:
    """Werkzeug's `request.is_json`, read from the environ (about 1 us less per request)."""
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def _json_error(body: bytes, exc: Exception) -> errors.ServingError:
    def reject_constant(name: str) -> None:
        raise errors.InvalidTensor(f"{name} is not a number JSON allows; send finite numbers",
                                   {"value": name}, code="non_finite_value")
    def finite_float(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            reject_constant(text)
        return value

    try:
        json.loads(body, parse_constant=reject_constant, parse_float=finite_float)
    except errors.ServingError as constant_error:
        return constant_error
    except (ValueError, UnicodeDecodeError):
        pass
    return errors.InvalidJSON(f"the body is not valid JSON: {exc}")


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


def request_id() -> str:
    """The id of this request (from X-Request-ID, or a new one)."""
    return request_id_for(request.environ)


def internal_error(exc: BaseException) -> Response:
    """A bug: log the traceback with the request id; answer 500 without one."""
    rid = request_id()
    log.exception("unhandled error in %s %s (request id %s)", request.method, request.path, rid, exc_info=exc)
    return error_response(errors.InternalError("internal error; the server log has the details",
                                               {"request_id": rid}))
