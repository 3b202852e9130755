"""The native surface: POST /predict, GET /models, GET /health."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from app.api.dataplane import infer, resolve
from app.api.responses import json_response, read_json
from app.api.schemas import load_predict_request
from app.serving.registry import ModelRegistry
from app.serving.tensors import columns_to_arrays, instances_to_arrays

bp = Blueprint("native", __name__)


def registry() -> ModelRegistry:
    """The app's model registry (the only holder of model state)."""
    return current_app.extensions["registry"]


@bp.post("/predict")
def predict():
    """Run a model on rows (`instances`) or columns (`inputs`)."""
    data, check_bools = read_json()
    request = load_predict_request(data)
    servable = resolve(registry(), request["model"], request["version"])
    if "instances" in request:
        arrays = instances_to_arrays(request["instances"], servable.signature, check_bools=check_bools)
    else:
        arrays = columns_to_arrays(request["inputs"], servable.signature, check_bools=check_bools)
    result = infer(servable, arrays, current_app.config["MAX_REQUEST_ROWS"])
    body: dict[str, Any] = {"model": result.model, "version": result.version}
    if "instances" in request:
        body["predictions"] = as_rows(result.outputs)
    else:
        body["outputs"] = as_columns(result.outputs)
    return json_response(body)


def as_rows(outputs: dict[str, Any]) -> Any:
    """One entry per row; an object keyed by output name when there are several outputs."""
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    names = list(outputs)
    rows = len(next(iter(outputs.values())))
    return [{name: outputs[name][i] for name in names} for i in range(rows)]


def as_columns(outputs: dict[str, Any]) -> Any:
    """One batch tensor, or an object from output name to batch tensor."""
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


@bp.get("/models")
def list_models():
    """Every model with the state of each version, and this worker's load shedding."""
    reg = registry()
    return json_response({"models": [
        {"name": name, "versions": [v.summary() for v in reg.model_versions(name)]} for name in reg.names()],
        "admission": current_app.extensions["load_shedder"].describe()})


@bp.get("/models/<name>")
def get_model(name: str):
    """One model with every version's signature, source and statistics."""
    versions = registry().model_versions(name)
    return json_response({"name": name, "versions": [v.describe() for v in versions]})


@bp.get("/models/<name>/versions/<int:version>")
def get_model_version(name: str, version: int):
    """One version of one model."""
    return json_response({"name": name, **registry().get(name, version).describe()})


@bp.get("/health")
def health():
    """Liveness: 200 while the process serves."""
    return json_response({"status": "ok"})


@bp.get("/health/ready")
def ready():
    """Readiness: 200 when every model version is AVAILABLE, else 503 naming what is not."""
    is_ready, blocking = registry().readiness()
    if is_ready:
        return json_response({"status": "ready"})
    return json_response({"status": "not_ready", "not_ready": blocking}, status=503)
