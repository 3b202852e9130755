"""`POST /predict` at the WSGI level: the native view's decode, infer and encode over the environ.

The route that carries most traffic skips Flask's request context, URL matching and Response object
(`python -m bench.inproc` gives the cost per request either way). Everything else, and `/predict`
too when SERVING_DIRECT_PREDICT=false, goes through Flask. The answers are the Flask view's, status,
headers and body alike: tests/api/test_direct.py sends good and bad requests both ways.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from werkzeug.http import HTTP_STATUS_CODES

from app import errors
from app.api import native
from app.api.dataplane import DataPlane
from app.api.request_ids import request_id_for
from app.api.responses import JSON_OPTIONS, error_payload, json_default
from app.observability.facts import note_error

log = logging.getLogger("app.api.responses")  # the logger of the Flask path's tracebacks
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
STATUS_LINES = {code: f"{code} {reason.upper()}" for code, reason in HTTP_STATUS_CODES.items()}  # Werkzeug's


class DirectPredict:
    """WSGI middleware in front of Flask: answer `POST /predict` itself, pass every other request on."""

    def __init__(self, wsgi_app: WSGIApp, dataplane: DataPlane, max_content_length: int):
        self.wsgi_app, self.dataplane, self.max_content_length = wsgi_app, dataplane, max_content_length

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/predict" or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        try:
            decoded = native.decode(environ, self.max_content_length)
            status, (payload, headers) = 200, native.encode(decoded, self.dataplane.infer(decoded))
        except errors.ServingError as error:
            status, payload, headers = error_payload(error, "native")
            note_error(error.code)
        except Exception as exc:  # a bug: logged once with the request id, as the Flask path does
            rid = request_id_for(environ)
            log.exception("unhandled error in POST /predict (request id %s)", rid, exc_info=exc)
            error = errors.InternalError("internal error; the server log has the details", {"request_id": rid})
            status, payload, headers = error_payload(error, "native")
            note_error(error.code)
        body = orjson.dumps(payload, default=json_default, option=JSON_OPTIONS)
        start_response(STATUS_LINES[status], [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(body))), *headers.items()])
        return [body]
