"""Logging of the `app` loggers on stdout, each record written once: text lines, or JSON objects.

The `app` logger has its own handler and does not propagate to the root logger: absl (imported by
TensorFlow) calls `logging.basicConfig()` the first time it logs, which puts a stderr handler on the
root, and a propagating `app` logger then wrote every line twice. Flask's `app.logger` is this same
`app` logger (the package is named `app`), so Flask adds no handler of its own to it either.

With SERVING_LOG_FORMAT=json every line is one JSON object (python-json-logger): the `app` loggers
(the access line included), and the root logger too, so what TensorFlow, absl and Python's warnings
log comes out in the same format (the root has a handler, so absl's `basicConfig()` adds none).
TensorFlow's C++ start-up messages are silenced (TF_CPP_MIN_LOG_LEVEL=2 unless set); gunicorn's own
lines are formatted by `app.observability.gunicorn_logs`.
"""
from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
JSON_FIELDS = "{levelname}{name}{message}{process}"
JSON_RENAMES = {"levelname": "level", "name": "logger", "process": "pid"}


class StdoutHandler(logging.StreamHandler):
    """A handler writing to whatever `sys.stdout` is when a record comes (test runners replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - the stream logging.StreamHandler writes to
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001 - StreamHandler.__init__ and setStream assign it
        pass


def json_formatter() -> logging.Formatter:
    """One JSON object a record: time (UTC, ISO 8601), level, logger, message, pid and any `extra` fields."""
    from pythonjsonlogger.orjson import OrjsonFormatter

    return OrjsonFormatter(JSON_FIELDS, style="{", timestamp="time", rename_fields=JSON_RENAMES)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send the `app` loggers to stdout at `level`, once per record (calling it again replaces the handler);
    with `log_format="json"` as JSON objects, the root logger's records too."""
    formatter = json_formatter() if log_format == "json" else logging.Formatter(FORMAT)
    logger = logging.getLogger("app")
    logger.setLevel(level)
    logger.propagate = False
    _replace_handler(logger, formatter)
    if log_format == "json":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads (models load later)
        _replace_handler(logging.getLogger(), formatter)
        logging.captureWarnings(True)  # Python warnings as records of the `py.warnings` logger


def _replace_handler(logger: logging.Logger, formatter: logging.Formatter) -> None:
    """Give `logger` one StdoutHandler with `formatter` (dropping one an earlier call added)."""
    for handler in [h for h in logger.handlers if isinstance(h, StdoutHandler)]:
        logger.removeHandler(handler)
    handler = StdoutHandler()
    handler.setFormatter(formatter)
    logger.addHandler(handler)
