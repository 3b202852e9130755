"""One model's settings file (`serving.json`), typed: each key overrides the server's setting."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.serving.types import BatchingSettings
from app.settings import NonNegativeFloat, Runtime, Settings, lower_first


class ModelSettings(BaseModel):
    """One model's `serving.json`: each key is optional and overrides the server's setting.

    Beside a flat file `NAME.h5` it is `NAME.serving.json`; in a model folder `NAME/serving.json`.
    Unknown keys are an error (a typo must not pass silently).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_size: Annotated[int, Field(ge=1, strict=True)] | None = Field(None, description=(
        "Overrides SERVING_MAX_BATCH_SIZE for this model."))
    max_batch_delay_ms: NonNegativeFloat | None = Field(None, description=(
        "Overrides SERVING_MAX_BATCH_DELAY_MS for this model."))
    max_queue_rows: Annotated[int, Field(ge=1, strict=True)] | None = Field(None, description=(
        "Overrides SERVING_MAX_QUEUE_ROWS for this model."))
    request_timeout: NonNegativeFloat | None = Field(None, description=(
        "Overrides SERVING_REQUEST_TIMEOUT for this model."))
    safe_mode: bool = Field(True, description="Keras safe mode; false allows Lambda layers (trusted files only).")
    runtime: Runtime | None = Field(None, description="Forward pass for this model; overrides SERVING_RUNTIME.")


def read_model_settings(path: Path | None) -> ModelSettings:
    """Read and validate a `serving.json` (none: every key unset); raise ValueError with a one-line reason."""
    if path is None or not path.exists():
        return ModelSettings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path.name} must hold a JSON object")
    try:
        return ModelSettings.model_validate(raw)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {lower_first(e['msg'])}" for e in exc.errors())
        raise ValueError(f"{path.name} is invalid: {reasons}") from None


def batching_settings(settings: Settings, model: ModelSettings) -> BatchingSettings:
    """The server's batching settings with one model's overrides applied."""
    def pick(name: str) -> Any:
        value = getattr(model, name)
        return getattr(settings, name) if value is None else value

    return BatchingSettings(max_batch_size=pick("max_batch_size"), max_batch_delay_ms=pick("max_batch_delay_ms"),
                            max_queue_rows=pick("max_queue_rows"), request_timeout=pick("request_timeout"))


def model_runtime(settings: Settings, model: ModelSettings) -> str:
    """The forward pass a model asks for: its `serving.json` runtime, else SERVING_RUNTIME."""
    return settings.runtime if model.runtime is None else model.runtime
