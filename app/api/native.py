"""The native surface: POST /predict, GET /models, GET /health."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from app import errors
from app.api import json_body
from app.api.body import read_body
from app.api.context import dataplane, settings
from app.api.dataplane import InferRequest, InferResponse
from app.api.instances import as_columns, as_rows, decode_tensors
from app.api.responses import json_response
from app.api.schemas import load_predict_request

bp = Blueprint("native", __name__)

VERSION_HEADER = "X-Model-Version"  # on every inference answer of every REST surface: the version that computed it


def decode(environ: dict[str, Any], max_content_length: int) -> InferRequest:
    """A /predict body: {"model", "version" or "label", and "instances" (rows) or "inputs" (columns)}."""
    require_json(environ)
    body = read_body(environ, max_content_length)
    document = json_body.parse_object(body)
    envelope = load_predict_request(json_body.fields(document))
    key = "instances" if "instances" in envelope else "inputs"
    return decode_tensors(body, document, key, envelope["model"], envelope["version"], envelope["label"])


def encode(decoded: InferRequest, response: InferResponse) -> tuple[dict[str, Any], dict[str, str]]:
    """Rows answer `predictions`, columns answer `outputs`; both name the model and version (also in a header)."""
    body: dict[str, Any] = {"model": response.model, "version": response.version}
    if decoded.row_format:
        body["predictions"] = as_rows(response.outputs)
    else:
        body["outputs"] = as_columns(response.outputs)
    return body, {VERSION_HEADER: str(response.version)}


def require_json(environ: dict[str, Any]) -> None:
    """415 unless the body says it is JSON."""
    if not says_json(environ):
        mimetype = mimetype_of(environ)
        raise errors.UnsupportedMediaType(f"send the body as application/json (got {mimetype or 'no Content-Type'})",
                                          {"content_type": mimetype or None})


def mimetype_of(environ: dict[str, Any]) -> str:
    """The body's media type, lower case, without parameters (Werkzeug's `request.mimetype`)."""
    return environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()


def says_json(environ: dict[str, Any]) -> bool:
    """Werkzeug's `request.is_json`, read from the environ."""
    mimetype = mimetype_of(environ)
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


@bp.post("/predict")
def predict() -> Response:
    """Run a model on rows (`instances`) or columns (`inputs`)."""
    decoded = decode(request.environ, settings().max_content_length)
    payload, headers = encode(decoded, dataplane().infer(decoded))
    return json_response(payload, headers=headers)


@bp.get("/models")
def list_models() -> Response:
    """Every model with the state of each version, and this worker's load shedding."""
    registry = dataplane().registry
    return json_response({"models": [
        {"name": name, "versions": [v.summary() for v in registry.model_versions(name)]} for name in registry.names()],
        "admission": current_app.extensions["load_shedder"].describe()})


@bp.get("/models/<name>")
def get_model(name: str) -> Response:
    """One model with every version's signature, source and statistics."""
    versions = dataplane().registry.model_versions(name)
    return json_response({"name": name, "versions": [v.describe(settings().model_dir) for v in versions]})


@bp.get("/models/<name>/versions/<int:version>")
def get_model_version(name: str, version: int) -> Response:
    """One version of one model."""
    return json_response({"name": name, **dataplane().registry.get(name, version).describe(settings().model_dir)})


@bp.get("/health")
def health() -> Response:
    """Liveness: 200 while the process serves."""
    return json_response({"status": "ok"})


@bp.get("/health/ready")
def ready() -> Response:
    """Readiness of the instance: 200 when every worker has every version AVAILABLE, else 503 naming what is not."""
    answer = dataplane().registry.instance_readiness()
    return json_response({"status": "ready" if answer.ready else "not_ready", **answer.details()},
                         status=200 if answer.ready else 503)
