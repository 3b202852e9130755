"""The answers gunicorn gives before the app runs (a bad request line or header, a URI or header block
too large, an unsupported transfer coding, ...) in our JSON error shape instead of gunicorn's HTML.

The statuses are gunicorn 27's (`Worker.handle_error`); each gets a stable snake_case code. A
`ServingError` raised while the request is read (408 `request_timeout`: app.gunicorn.read_timeout) is
answered with its own status and code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from ssl import SSLError
from typing import Any

from gunicorn.http import errors as http

from app.errors import ServingError

INTERNAL_MESSAGE = "internal error; the server log has the details"


@dataclass(frozen=True)
class ErrorAnswer:
    """What the worker answers: status line, error code and message; `client_error` when the client
    is at fault (gunicorn logs a one-line warning then, and a traceback otherwise)."""

    status: int
    reason: str
    code: str
    message: str
    client_error: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The whole HTTP response; the connection closes after it."""
        body = json.dumps({"error": {"code": self.code, "message": self.message, "details": self.details}}).encode()
        head = (f"HTTP/1.1 {self.status} {self.reason}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        return head.encode("latin-1") + body


_BAD = (400, "Bad Request")
# In gunicorn's order (subclasses before their bases: a response header is not a request header).
_ANSWERS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], tuple[int, str], str], ...] = (
    (http.InvalidRequestLine, _BAD, "invalid_request_line"),
    (http.InvalidRequestMethod, _BAD, "invalid_method"),
    (http.InvalidHTTPVersion, _BAD, "invalid_http_version"),
    (http.UnsupportedTransferCoding, (501, "Not Implemented"), "unsupported_transfer_coding"),
    (http.ConfigurationProblem, (500, "Internal Server Error"), "configuration_problem"),
    (http.ObsoleteFolding, _BAD, "obsolete_line_folding"),
    ((http.InvalidHeaderName, http.InvalidHeader), _BAD, "invalid_header"),
    (http.LimitRequestLine, (414, "URI Too Long"), "uri_too_long"),
    (http.ExpectationFailed, (417, "Expectation Failed"), "expectation_failed"),
    (http.LimitRequestHeaders, (431, "Request Header Fields Too Large"), "header_fields_too_large"),
    (http.InvalidProxyLine, _BAD, "invalid_proxy_line"),
    (http.ForbiddenProxyRequest, (403, "Forbidden"), "forbidden_proxy_request"),
    (http.InvalidSchemeHeaders, _BAD, "invalid_scheme_headers"),
    ((http.InvalidChunkSize, http.ChunkMissingTerminator, http.InvalidChunkExtension), _BAD, "invalid_chunked_body"),
    (http.InvalidH2CPreface, _BAD, "invalid_h2c_preface"),
    (SSLError, (403, "Forbidden"), "tls_error"),
)


def error_answer(exc: BaseException) -> ErrorAnswer:
    """The answer to an error gunicorn met while reading or serving a request."""
    if isinstance(exc, ServingError):
        return ErrorAnswer(exc.status, HTTPStatus(exc.status).phrase, exc.code, exc.message, details=exc.details)
    if not isinstance(exc, (http.InvalidResponseHeader, http.InvalidResponseHeaderName)):  # the app's fault
        for kinds, (status, reason), code in _ANSWERS:
            if isinstance(exc, kinds):
                return ErrorAnswer(status, reason, code, str(exc))
    return ErrorAnswer(500, "Internal Server Error", "internal_error", INTERNAL_MESSAGE, client_error=False)
