"""One exception hierarchy for the whole server: stable codes and HTTP statuses.

Every error a client can see is a `ServingError`. The API layer maps them to
responses in one place (`app.api.responses`); nothing here knows about Flask.
"""
from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """Base class: `code` is stable and snake_case, `status` is the HTTP status."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The native error body: {"error": {"code", "message", "details"}}."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ServingError):
    """400: the request is malformed (envelope, JSON, tensor structure)."""

    code = "bad_request"
    status = 400


class InvalidJSON(BadRequest):
    code = "invalid_json"


class InvalidRequest(BadRequest):
    """The request envelope does not match the schema."""

    code = "invalid_request"


class InvalidTensor(BadRequest):
    """A tensor is ragged, empty, non-numeric or non-finite."""

    code = "invalid_tensor"


class NotFound(ServingError):
    code = "not_found"
    status = 404


class ModelNotFound(NotFound):
    code = "model_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class MethodNotAllowed(ServingError):
    code = "method_not_allowed"
    status = 405


class PayloadTooLarge(ServingError):
    code = "payload_too_large"
    status = 413


class TooManyRows(PayloadTooLarge):
    code = "too_many_rows"


class UnsupportedMediaType(ServingError):
    code = "unsupported_media_type"
    status = 415


class InputMismatch(ServingError):
    """422: a well-formed input that does not fit the model's signature."""

    code = "input_mismatch"
    status = 422


class Overloaded(ServingError):
    """429: the queue is full; the client should retry after `retry_after` seconds."""

    code = "overloaded"
    status = 429

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, retry_after: int = 1):
        super().__init__(message, details)
        self.retry_after = retry_after


class ModelNotAvailable(ServingError):
    """503: the model version exists but is loading, failed or unloading."""

    code = "model_not_available"
    status = 503


class DeadlineExceeded(ServingError):
    """504: the request waited in the queue past its deadline and was dropped."""

    code = "deadline_exceeded"
    status = 504


class InternalError(ServingError):
    """500: a bug. The message never carries a traceback."""

    code = "internal_error"
    status = 500


class ConfigError(Exception):
    """Invalid configuration, raised at startup; the message names the variable."""
