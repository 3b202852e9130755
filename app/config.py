"""Settings: defaults, then `SERVING_*` environment variables, then `test_config`.

Each setting is declared once below with its documentation; the README's
settings table mirrors this list (a test checks that they agree).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.serving.types import RUNTIMES

REPO_ROOT = Path(__file__).resolve().parent.parent


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("expected an integer >= 1")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected an integer >= 0")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("expected a finite number >= 0")
    return value


def _optional_str(raw: str) -> str | None:
    return raw.strip() or None


def _runtime(raw: str) -> str:
    value = raw.strip().lower()
    if value not in RUNTIMES:
        raise ValueError("expected auto, tflite or tf")
    return value


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return level


@dataclass(frozen=True)
class Setting:
    """One setting: its key (env var is `SERVING_<key>`), parser, default and meaning."""

    key: str
    parse: Callable[[str], Any]
    default: Any
    doc: str

    @property
    def env_var(self) -> str:
        return f"SERVING_{self.key}"


SETTINGS: tuple[Setting, ...] = (
    Setting("MODEL_DIR", Path, REPO_ROOT / "models",
            "Folder of models: `NAME.h5`/`NAME.keras` (version 1) or `NAME/VERSION/<file>`."),
    Setting("DEFAULT_MODEL", _optional_str, None,
            "Model used when a request names none (otherwise the only available model)."),
    Setting("MAX_CONTENT_LENGTH", _positive_int, 32 * 1024 * 1024,
            "Largest request body in bytes; larger bodies get 413 before they are read."),
    Setting("MAX_REQUEST_ROWS", _positive_int, 10_000,
            "Most rows (examples) one request may carry; more get 413 `too_many_rows`."),
    Setting("MAX_BATCH_SIZE", _positive_int, 256,
            "Most rows per forward pass; larger requests are split, concurrent ones are merged up to it."),
    Setting("MAX_BATCH_DELAY_MS", _non_negative_float, 2.0,
            "Longest time the batcher holds the oldest request while more are on their way (ms)."),
    Setting("MAX_QUEUE_ROWS", _positive_int, 2048,
            "Rows allowed to wait per model version; beyond it requests get 429 `overloaded`."),
    Setting("MAX_QUEUE_WAIT_MS", _non_negative_float, 50.0,
            "Longest an inference request may wait for a worker thread; later ones get 429 `overloaded` "
            "before Flask sees them (0: no limit; measured by the bundled gunicorn worker)."),
    Setting("QUEUE_WAIT_GRACE_MS", _non_negative_float, 25.0,
            "How long waits must stay over SERVING_MAX_QUEUE_WAIT_MS before shedding starts, so a "
            "momentary stall under normal load sheds nothing (ms; none within 1 s of the last 429)."),
    Setting("REQUEST_TIMEOUT", _non_negative_float, 30.0,
            "Seconds a request may wait to run before it is dropped with 504 (0 disables)."),
    Setting("LOADING_WAIT", _non_negative_float, 30.0,
            "Seconds a request for a version that is still LOADING waits for it before 503."),
    Setting("STRICT_READINESS", _bool, True,
            "When true, a FAILED model version keeps `/health/ready` at 503."),
    Setting("RUNTIME", _runtime, "auto",
            "Forward pass: `auto` (TFLite when the model converts and agrees with TensorFlow, else a "
            "TensorFlow function), `tflite` (or fail to load) or `tf`."),
    Setting("TF_INTRA_OP_THREADS", _non_negative_int, 1,
            "TensorFlow (and TFLite) intra-op threads per worker (0 lets TensorFlow choose)."),
    Setting("TF_INTER_OP_THREADS", _non_negative_int, 1,
            "TensorFlow inter-op threads per worker (0 lets TensorFlow choose)."),
    Setting("LOG_LEVEL", _log_level, "INFO", "Log level of the `app` loggers."),
)


def load_config(environ: Mapping[str, str] | None = None,
                test_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the configuration; raise ConfigError naming the variable on a bad value."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    for setting in SETTINGS:
        raw = environ.get(setting.env_var)
        if raw is None:
            continue
        try:
            config[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.env_var}={raw!r} is invalid: {exc}") from None
    if test_config:
        config.update(test_config)
    config["MODEL_DIR"] = Path(config["MODEL_DIR"])
    return config
