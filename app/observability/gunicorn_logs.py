"""gunicorn's logger (`logger_class` in gunicorn.conf.py): gunicorn's own, with JSON lines when
SERVING_LOG_FORMAT=json (its error log, and its access log if GUNICORN_ACCESS_LOG is on).

The master reads the variable itself (it builds no app); a worker's app factory validates it.
"""
from __future__ import annotations

import os
from typing import Any

from gunicorn import glogging

from app.logs import json_formatter


def json_logs(environ: Any = os.environ) -> bool:
    """Whether SERVING_LOG_FORMAT asks for JSON lines."""
    return environ.get("SERVING_LOG_FORMAT", "text").strip().lower() == "json"


class ServingLogger(glogging.Logger):
    """gunicorn's logger; its handlers format JSON objects in json mode."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup, then the JSON formatter on every handler of its error and access logs."""
        super().setup(cfg)
        if json_logs():
            formatter = json_formatter()
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(formatter)
