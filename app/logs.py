"""Logging of the `app` loggers: text lines on stdout (beside gunicorn's own), each record written once.

The `app` logger has its own handler and does not propagate to the root logger: absl (imported by
TensorFlow) calls `logging.basicConfig()` the first time it logs, which puts a stderr handler on the
root, and a propagating `app` logger then wrote every line twice. Flask's `app.logger` is this same
`app` logger (the package is named `app`), so Flask adds no handler of its own to it either.
"""
from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


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


def configure_logging(level: str) -> None:
    """Send the `app` loggers to stdout at `level`, once per record (calling it again replaces the handler)."""
    logger = logging.getLogger("app")
    logger.setLevel(level)
    logger.propagate = False
    for handler in [h for h in logger.handlers if isinstance(h, StdoutHandler)]:
        logger.removeHandler(handler)
    handler = StdoutHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
