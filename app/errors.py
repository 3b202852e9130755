"""One exception hierarchy for the whole server: stable codes and HTTP statuses.

Every error a client can see is a `ServingError`. The API layer maps them to
responses in one place (`app.api.responses`); nothing here knows about Flask.
Every reason a servable version cannot be loaded is a `LoadError` (it becomes the version's
FAILED reason, which clients see inside a 503 `model_not_available`); `one_line` words them all.
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


class ModelLoadFailed(ServingError):
    """400 (as Triton answers a failed load): a load through the control API left a version FAILED in
    some worker; `details["failures"]` lists {"worker", "model", "version", "error"}."""

    code = "model_load_failed"
    status = 400


class Unauthorized(ServingError):
    """401: the route needs `Authorization: Bearer TOKEN` and none, or a wrong one, was sent."""

    code = "unauthorized"
    status = 401


class ManagementDisabled(ServingError):
    """403: a management route while no token is configured (management is never open by default)."""

    code = "management_disabled"
    status = 403


class NotFound(ServingError):
    code = "not_found"
    status = 404


class ModelNotFound(NotFound):
    code = "model_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class LabelNotFound(NotFound):
    """404: the model has no such label (serving.json `labels`)."""

    code = "label_not_found"


class MethodNotAllowed(ServingError):
    code = "method_not_allowed"
    status = 405


class RequestTimeout(ServingError):
    """408: the request did not arrive whole within SERVING_REQUEST_READ_TIMEOUT (app.gunicorn.read_timeout)."""

    code = "request_timeout"
    status = 408


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
    """504: not answered within `request_timeout`: queued, in an overdue pass, or refused behind a stalled one."""

    code = "deadline_exceeded"
    status = 504


class InternalError(ServingError):
    """500: a bug. The message never carries a traceback."""

    code = "internal_error"
    status = 500


class ConfigError(Exception):
    """Invalid configuration, raised at startup; the message names the variable."""


def one_line(problem: BaseException | str, limit: int = 300) -> str:
    """A reason on one line: whitespace collapsed, at most `limit` characters (an empty exception: its class name)."""
    text = " ".join(str(problem).split())
    if not text and isinstance(problem, BaseException):
        text = type(problem).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def reason_for(exc: BaseException, limit: int = 300) -> str:
    """The one-line reason a version FAILED: a LoadError's own words, any other exception named by its class."""
    if isinstance(exc, LoadError):
        return str(exc)
    return one_line(f"{type(exc).__name__}: {exc}", limit)


class LoadError(Exception):
    """A model version cannot be served; `str()` is a one-line reason naming the cause (its FAILED reason)."""

    def __init__(self, reason: str):
        super().__init__(one_line(reason))


class NotAModel(LoadError):
    """The file is not a Keras model this server can read (pickle, SavedModel, weights only, corrupt)."""


class RefusedConfig(LoadError):
    """The stored config holds something this server will not run (Keras 1 Merge, Lambda in safe mode)."""


class UntranslatableConfig(LoadError, ValueError):
    """A legacy config that no translation rule can rewrite faithfully for Keras 3."""


class RuntimeUnavailable(LoadError):
    """The model cannot run under TFLite; with runtime `auto` the reason is reported, not raised to the client."""
