"""The Open Inference Protocol's model repository extension, as Triton and MLServer have it (management token).

`POST /v2/repository/index` lists every version with its state; `POST /v2/repository/models/NAME/load`
re-reads the model's folder and settings (an optional `{"parameters": {"config": "<serving.json as a JSON
string>"}}` replaces its serving.json until the next load); `POST /v2/repository/models/NAME/unload` takes
every version out of service until the next load. Both answer 200 `{}` once every worker of the instance has
carried the call out (`app.extensions["control"]`: app.serving.control), else the worker and the reason.
"""
from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request

from app import errors
from app.api import json_body
from app.api.body import read_body
from app.api.context import settings
from app.api.responses import json_response
from app.serving.control_outcome import ControlOutcome

log = logging.getLogger(__name__)
bp = Blueprint("repository", __name__)

LOAD_PARAMETERS = frozenset({"config"})
UNLOAD_PARAMETERS = frozenset({"unload_dependents"})  # tritonclient always sends it; nothing depends on a model


@bp.post("/v2/repository/index")
def repository_index() -> Response:
    """Every model version with its state (READY, LOADING, UNLOADING, UNAVAILABLE: failed or END) and reason."""
    only_ready = _body().get("ready") is True
    rows = current_app.extensions["control"].index()
    return json_response([row for row in rows if row["state"] == "READY" or not only_ready])


@bp.post("/v2/repository/models/<name>/load")
def load_model(name: str) -> Response:
    """(Re)load a model from its folder in every worker, optionally with a serving.json given as a JSON string."""
    parameters = _parameters(_body(), LOAD_PARAMETERS)
    config = _config(parameters["config"]) if "config" in parameters else None
    outcome = current_app.extensions["control"].load(name, config)
    _log("load", name, outcome, config is not None)
    return json_response({})


@bp.post("/v2/repository/models/<name>/unload")
def unload_model(name: str) -> Response:
    """Unload every version of a model in every worker until the next load."""
    parameters = _parameters(_body(), UNLOAD_PARAMETERS)
    if not isinstance(parameters.get("unload_dependents", False), bool):
        raise errors.InvalidRequest("'parameters.unload_dependents' must be a boolean")
    outcome = current_app.extensions["control"].unload(name)
    _log("unload", name, outcome, False)
    return json_response({})


def _body() -> dict[str, Any]:
    """The JSON object sent (an empty body is `{}`)."""
    body = read_body(request.environ, settings().max_content_length)
    return json_body.plain(json_body.parse_object(body)) if body.strip() else {}


def _parameters(body: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """`body["parameters"]`, an object of the `allowed` keys only (400 otherwise)."""
    unknown = sorted(set(body) - {"parameters"})
    if unknown:
        raise errors.InvalidRequest(f"unknown field(s) {', '.join(map(repr, unknown))}: only 'parameters' is read",
                                    {"unknown": unknown})
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise errors.InvalidRequest("'parameters' must be an object")
    extra = sorted(set(parameters) - allowed)
    if extra:  # e.g. Triton's "file:..." parameters: models come from the model folder only
        raise errors.InvalidRequest(
            f"unsupported parameter(s) {', '.join(map(repr, extra))}; accepted: {', '.join(sorted(allowed))}",
            {"unsupported": extra, "accepted": sorted(allowed)})
    return parameters


def _config(text: Any) -> dict[str, Any]:
    """Triton's `config` parameter: a serving.json document as a JSON string, parsed into an object."""
    if not isinstance(text, str):
        raise errors.InvalidRequest("'parameters.config' must be a string holding a serving.json document")
    try:
        config = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(f"'parameters.config' is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise errors.InvalidRequest("'parameters.config' must hold a JSON object (a serving.json document)")
    return config


def _log(action: str, name: str, outcome: ControlOutcome, with_config: bool) -> None:
    log.info("control API: %s of model %s carried out by %d worker(s) (generation %d)%s", action, name,
             outcome.workers, outcome.generation, " with the config sent" if with_config else "",
             extra={"model": name, "action": action, "generation": outcome.generation, "workers": outcome.workers})
