"""Typed settings: the server's (`SERVING_*`) and gunicorn's (a model's `serving.json`: app.serving.model_settings).

Each setting is declared once below with its meaning; the settings table of
docs/operations.md is generated from these declarations (scripts/settings_table.py).
No TensorFlow here: gunicorn.conf.py imports this module in the master.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, FilePath, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import ConfigError
from app.serving.types import RUNTIMES

REPO_ROOT = Path(__file__).resolve().parent.parent

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Runtime = Literal[RUNTIMES]  # type: ignore[valid-type]  # "auto", "tflite" or "tf"


def _stripped(convert: Any) -> BeforeValidator:
    """Strip a string value and apply `convert` (e.g. str.upper) before validation."""
    return BeforeValidator(lambda value: convert(value.strip()) if isinstance(value, str) else value)


class Settings(BaseSettings):
    """The server's settings: defaults, then `SERVING_<NAME>` variables, then `create_app(test_config)`."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", frozen=True, extra="forbid")

    model_dir: Path = Field(REPO_ROOT / "models", description=(
        "Folder of models: `NAME.h5`/`NAME.keras` (version 1) or `NAME/VERSION/<file>`."))
    default_model: Annotated[str | None, _stripped(lambda s: s or None)] = Field(None, description=(
        "Model used when a request names none (otherwise the only available model)."))
    max_content_length: PositiveInt = Field(32 * 1024 * 1024, description=(
        "Largest request body in bytes; larger bodies get 413 before they are read."))
    direct_predict: bool = Field(True, description=(
        "Answer `POST /predict` in a WSGI layer before Flask: the view's codec and answers, no request context."))
    max_request_rows: PositiveInt = Field(10_000, description=(
        "Most rows (examples) one request may carry; more get 413 `too_many_rows`."))
    max_batch_size: PositiveInt = Field(256, description=(
        "Most rows per forward pass; larger requests are split, concurrent ones are merged up to it."))
    max_batch_delay_ms: NonNegativeFloat = Field(2.0, description=(
        "Longest time the batcher holds the oldest request while more are on their way (ms)."))
    max_queue_rows: PositiveInt = Field(2048, description=(
        "Rows allowed to wait per model version; beyond it requests get 429 `overloaded`."))
    max_queue_wait_ms: NonNegativeFloat = Field(50.0, description=(
        "Longest an inference request may wait for a worker thread; later ones get 429 `overloaded` "
        "before Flask sees them (0: no limit; measured by the bundled gunicorn worker)."))
    queue_wait_grace_ms: NonNegativeFloat = Field(25.0, description=(
        "How long waits must stay over SERVING_MAX_QUEUE_WAIT_MS before shedding starts, so a "
        "momentary stall under normal load sheds nothing (ms; none within 1 s of the last 429)."))
    request_timeout: NonNegativeFloat = Field(30.0, description=(
        "Seconds from a request's arrival at its model to its answer (queued or in a forward pass) "
        "before it gets 504 `deadline_exceeded` (0 disables)."))
    request_read_timeout: NonNegativeFloat = Field(30.0, description=(
        "Seconds from a request's first byte until it must have arrived whole (headers and body), else 408 "
        "`request_timeout` and the connection closes: a slow client holds a thread at most this long (0: no limit)."))
    loading_wait: NonNegativeFloat = Field(30.0, description=(
        "Seconds a request for a version that is still LOADING waits for it before 503."))
    poll_seconds: NonNegativeFloat = Field(0.0, description="Seconds between each worker's scans of SERVING_MODEL_DIR: "
                                           "new versions load, removed ones unload, serving.json re-applies (0: off).")
    drain_seconds: NonNegativeFloat = Field(0.0, description=(
        "On SIGTERM, seconds to keep serving (with `Connection: close`) while readiness already answers 503."))
    keepalive_requests: PositiveInt = Field(1000, description=(
        "Requests served on one kept-alive connection before it is closed (as nginx's keepalive_requests)."))
    keepalive_seconds: NonNegativeFloat = Field(300.0, description=(
        "Seconds after which a kept-alive connection is closed at its next answer (0: never)."))
    strict_readiness: bool = Field(True, description=(
        "When true, a FAILED model version keeps `/health/ready` at 503."))
    runtime: Annotated[Runtime, _stripped(str.lower)] = Field("auto", description=(
        "Forward pass: `auto` (TFLite when the model converts and agrees with TensorFlow, else a "
        "TensorFlow function), `tflite` (or fail to load) or `tf`."))
    tf_intra_op_threads: NonNegativeInt = Field(1, description=(
        "TensorFlow (and TFLite) intra-op threads per worker (0 lets TensorFlow choose)."))
    tf_inter_op_threads: NonNegativeInt = Field(1, description=(
        "TensorFlow inter-op threads per worker (0 lets TensorFlow choose)."))
    grpc_port: Annotated[int, Field(ge=0, le=65535)] = Field(8001, description=(
        "gRPC port (V2 GRPCInferenceService, TF Serving's services, health), shared by the workers; 0: no gRPC."))
    grpc_max_connection_age: NonNegativeFloat = Field(60.0, description=(
        "Seconds before a gRPC connection is asked to reconnect, so load rebalances between workers (0: never)."))
    grpc_threads: PositiveInt = Field(8, description="Threads per worker serving gRPC calls.")
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], _stripped(str.upper)] = Field(
        "INFO", description="Log level of the `app` loggers.")
    log_format: Annotated[Literal["text", "json"], _stripped(str.lower)] = Field("text", description=(
        "`json`: every log line (app, gunicorn, access) is one JSON object; `text`: plain lines."))
    access_log: bool | None = Field(None, description=(
        "One access line per request (request id, status, model, rows, latency); unset: on with json logs."))
    metrics: bool = Field(True, description="When false, no Prometheus metrics are kept and `/metrics` is 404.")
    traces: bool = Field(True, description=(
        "When false, no OpenTelemetry traces even with `OTEL_TRACES_EXPORTER` set (unset or `none`: off)."))
    api_tokens: SecretStr | None = Field(None, description=(
        "Bearer tokens, comma-separated, for `Authorization: Bearer TOKEN` (never logged)."))
    api_tokens_file: Path | None = Field(None, description=(
        "File of bearer tokens, one a line, re-read when it changes (rotation without a restart)."))
    require_token: bool = Field(False, description=(
        "When true, inference and metadata need a token too (health endpoints never do)."))
    metrics_token_required: bool = Field(False, description="When true, `/metrics` needs a token.")
    translate_lambda: bool = Field(True, description=(
        "When true, a Lambda layer whose stored bytecode fits the translator's grammar is served as an "
        "expression (the bytecode is read, never run); false leaves every Lambda to safe mode."))
    allow_custom_code: bool = Field(False, description=(
        "When true, a model's `custom_objects.py` is imported and run; otherwise that version is FAILED."))
    max_explain_rows: PositiveInt = Field(16, description=(
        "Most rows one `/explain` request may carry; more get 400 `too_many_rows`."))
    max_explain_steps: PositiveInt = Field(256, description=(
        "Most integrated-gradients steps one `/explain` request may ask for; more get 400."))
    explain_threads: PositiveInt = Field(1, description=(
        "Threads per worker computing explanations (their own lane, never the prediction batcher)."))
    explain_queue: NonNegativeInt = Field(2, description=(
        "Explanations allowed to wait for an explain thread per worker; beyond it 429 `overloaded`."))
    explain_timeout: NonNegativeFloat = Field(30.0, description=(
        "Seconds an explanation may take, waiting included, before 504 `deadline_exceeded`."))
    runtime_dir: Path | None = Field(None, description=(
        "Folder of the model-control state the workers share (emptied at start); unset: gunicorn's master "
        "makes one in /dev/shm (or the temp folder) and removes it on exit."))
    control_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(120.0, description=(
        "Seconds a load or unload through the API waits for every worker to carry it out before 504 "
        "`deadline_exceeded` naming the workers that did not."))


class GunicornSettings(BaseSettings):
    """gunicorn's settings, read by gunicorn.conf.py from the variables named below (no prefix)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_by_name=True)

    host: str = Field("0.0.0.0", validation_alias="HOST", description="Address gunicorn binds to.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(8000, validation_alias="PORT", description="Port to bind to.")
    web_concurrency: PositiveInt = Field(2, validation_alias="WEB_CONCURRENCY", description=(
        "Worker processes; one per core (each holds its own copy of the models)."))
    threads: PositiveInt = Field(4, validation_alias="GUNICORN_THREADS", description=(
        "Threads per worker; more spend more CPU per request on GIL hand-offs."))
    timeout: NonNegativeInt = Field(120, validation_alias="GUNICORN_TIMEOUT", description=(
        "Seconds a silent worker may live before gunicorn restarts it (0 disables)."))
    graceful_timeout: NonNegativeInt = Field(30, validation_alias="GUNICORN_GRACEFUL_TIMEOUT", description=(
        "Seconds a stopping worker has to finish its requests."))
    access_log: bool = Field(False, validation_alias="GUNICORN_ACCESS_LOG", description=(
        "When true, gunicorn writes an access log line per request to stdout."))
    log_level: Annotated[Literal["debug", "info", "warning", "error", "critical"], _stripped(str.lower)] = Field(
        "info", validation_alias="GUNICORN_LOG_LEVEL", description="Log level of gunicorn's own logger.")
    certfile: FilePath | None = Field(None, validation_alias="GUNICORN_CERTFILE", description=(
        "PEM certificate: gunicorn serves HTTPS itself (better: terminate TLS at the load balancer)."))
    keyfile: FilePath | None = Field(None, validation_alias="GUNICORN_KEYFILE", description=(
        "PEM private key of GUNICORN_CERTFILE (unless that file holds it too)."))


SETTING_NAMES: frozenset[str] = frozenset(name.upper() for name in Settings.model_fields)
AnySettings = TypeVar("AnySettings", Settings, GunicornSettings)


def env_var(cls: type[BaseSettings], name: str) -> str:
    """The environment variable that sets field `name` of `cls`."""
    alias = cls.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def _load(cls: type[AnySettings], overrides: Mapping[str, Any], environ: Mapping[str, str]) -> AnySettings:
    """`cls` from `environ` then `overrides`; raise ConfigError naming the variable and its value."""
    given = {key.lower(): value for key, value in overrides.items()}
    found = {key.upper(): value for key, value in environ.items()}  # names in any case, as pydantic-settings reads
    raw = {name: found[env_var(cls, name)] for name in cls.model_fields if env_var(cls, name) in found}
    values = {name: field.default for name, field in cls.model_fields.items()} | raw | given  # cls() reads os.environ
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError("; ".join(_reason(cls, e, overrides, raw) for e in exc.errors())) from None


def _reason(cls: type[BaseSettings], error: Any, overrides: Mapping[str, Any], raw: Mapping[str, str]) -> str:
    """One failed field as `NAME=value is invalid: why`, NAME the variable (or override key) that set it."""
    name = str(error["loc"][0])
    if name in raw and not any(key.lower() == name for key in overrides):
        return f"{env_var(cls, name)}={raw[name]!r} is invalid: {lower_first(error['msg'])}"
    key = next(key for key in overrides if key.lower() == name)
    if error["type"] == "extra_forbidden":
        return f"{key!r} is not a setting of {cls.__name__}"
    return f"{key}={overrides[key]!r} is invalid: {lower_first(error['msg'])}"


def lower_first(message: str) -> str:
    """A validation message as the end of our sentence."""
    return message[:1].lower() + message[1:]


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """The server's settings: defaults, `SERVING_*` variables, then `overrides` (keys in any case)."""
    return _load(Settings, overrides or {}, os.environ if environ is None else environ)


def load_gunicorn_settings(environ: Mapping[str, str] | None = None) -> GunicornSettings:
    """gunicorn's settings from the environment; raise ConfigError naming a bad variable."""
    return _load(GunicornSettings, {}, os.environ if environ is None else environ)
