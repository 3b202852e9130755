"""One model's settings file (`serving.json`), typed: each key overrides the server's setting."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from app.serving.types import BatchingSettings
from app.settings import NonNegativeFloat, Runtime, Settings, lower_first

PositiveVersion = Annotated[int, Field(ge=1, strict=True)]
LabelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$")]
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class AllVersions(BaseModel):
    """`{"all": {}}`: every version found is aspired (the default)."""

    model_config = _FROZEN


class LatestVersions(BaseModel):
    """`{"latest": {"num_versions": N}}`: the N highest version numbers found are aspired."""

    model_config = _FROZEN
    num_versions: PositiveVersion = Field(1, description="How many of the highest versions to serve (default 1).")


class SpecificVersions(BaseModel):
    """`{"specific": {"versions": [1, 3]}}`: the versions listed are aspired (one missing on disk is absent)."""

    model_config = _FROZEN
    versions: Annotated[tuple[PositiveVersion, ...], Field(min_length=1)] = Field(description=(
        "The version numbers to serve."))


class VersionPolicy(BaseModel):
    """Which versions found on disk are aspired (TF Serving's servable version policy): exactly one key."""

    model_config = _FROZEN
    all: AllVersions | None = Field(None, description="Serve every version found.")
    latest: LatestVersions | None = Field(None, description="Serve the num_versions highest versions found.")
    specific: SpecificVersions | None = Field(None, description="Serve the versions listed.")

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionPolicy:
        if sum(choice is not None for choice in (self.all, self.latest, self.specific)) != 1:
            raise ValueError("must hold exactly one of all, latest, specific")
        return self

    def __str__(self) -> str:
        if self.latest is not None:
            return f"latest(num_versions={self.latest.num_versions})"
        if self.specific is not None:
            return f"specific(versions={list(self.specific.versions)})"
        return "all"


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
    version_policy: VersionPolicy = Field(default_factory=lambda: VersionPolicy(all=AllVersions()), description=(
        "Which versions found are served: {\"all\": {}} (default), {\"latest\": {\"num_versions\": N}} or "
        "{\"specific\": {\"versions\": [1, 3]}}; the others are listed as not aspired (END) and never loaded."))
    labels: dict[LabelName, PositiveVersion] = Field(default_factory=dict, description=(
        "Label -> version, e.g. {\"stable\": 1, \"canary\": 2}; requests may name a label instead of a version."))
    default_version: PositiveVersion | None = Field(None, description=(
        "The version a request naming neither version nor label gets (unset: the highest version available "
        "in every worker)."))


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
        return parse_model_settings(raw)
    except ValueError as exc:
        raise ValueError(f"{path.name} is invalid: {exc}") from None


def parse_model_settings(raw: Any) -> ModelSettings:
    """Validate a `serving.json` document already parsed; raise ValueError with a one-line reason."""
    try:
        return ModelSettings.model_validate(raw)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {_message(e['msg'])}"
                                   for e in exc.errors())) from None


def _message(text: str) -> str:
    return lower_first(text.removeprefix("Value error, "))


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
