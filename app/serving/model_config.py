"""The per-model settings file (`serving.json`), validated with marshmallow.

Beside a flat file `NAME.h5` it is `NAME.serving.json`; in a model folder it is
`NAME/serving.json`. Every key is optional and overrides the global setting:

    {"max_batch_size": 32, "max_batch_delay_ms": 1, "max_queue_rows": 256,
     "request_timeout": 10, "safe_mode": true, "runtime": "auto"}
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from app.serving.types import RUNTIMES, BatchingSettings


class ModelConfigSchema(Schema):
    """Keys allowed in `serving.json`; unknown keys are an error (typos must not pass silently)."""

    class Meta:
        unknown = RAISE

    max_batch_size = fields.Integer(strict=True, validate=validate.Range(min=1))
    max_batch_delay_ms = fields.Float(validate=validate.Range(min=0), allow_nan=False)
    max_queue_rows = fields.Integer(strict=True, validate=validate.Range(min=1))
    request_timeout = fields.Float(validate=validate.Range(min=0), allow_nan=False)
    safe_mode = fields.Boolean(
        metadata={"doc": "Keras safe mode; false allows Lambda layers (trusted files only)."})
    runtime = fields.String(validate=validate.OneOf(RUNTIMES),
                            metadata={"doc": "Forward pass for this model; overrides SERVING_RUNTIME."})


def read_model_config(path: Path | None) -> dict[str, Any]:
    """Read and validate a `serving.json`; raise ValueError with a one-line reason."""
    if path is None or not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path.name} must hold a JSON object")
    try:
        return ModelConfigSchema().load(raw)
    except ValidationError as exc:
        raise ValueError(f"{path.name} is invalid: {exc.messages}") from None


def batching_settings(config: dict[str, Any], overrides: dict[str, Any]) -> BatchingSettings:
    """Global batching settings from the app config, with a model's overrides applied."""
    return BatchingSettings(
        max_batch_size=overrides.get("max_batch_size", config["MAX_BATCH_SIZE"]),
        max_batch_delay_ms=overrides.get("max_batch_delay_ms", config["MAX_BATCH_DELAY_MS"]),
        max_queue_rows=overrides.get("max_queue_rows", config["MAX_QUEUE_ROWS"]),
        request_timeout=overrides.get("request_timeout", config["REQUEST_TIMEOUT"]),
    )
