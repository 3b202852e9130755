"""TensorFlow Serving's REST API (`/v1/models/...`): model status, metadata and predict.

Follows TF Serving's `api_rest` documentation: row (`instances`) and columnar
(`inputs`) requests, `predictions` / `outputs` answers, `{"error": "..."}` errors.
A version is picked by number (`/versions/V`), by label (`/labels/L`, serving.json `labels`) or,
when neither is given, the model's default (`default_version`, else the highest routable one).
Inference goes through the one data plane (`app.api.dataplane.DataPlane`); a :predict answer
names the version that computed it in the `X-Model-Version` header (TF Serving's body names none).
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Request, Response, request

from app import errors
from app.api import json_body
from app.api.body import read_body
from app.api.context import dataplane, settings
from app.api.dataplane import InferRequest, InferResponse
from app.api.instances import as_columns, as_rows, decode_tensors
from app.api.native import VERSION_HEADER
from app.api.responses import json_response
from app.serving.servable import ServableVersion
from app.serving.types import ModelState, TensorSpec

bp = Blueprint("tfserving", __name__)

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
# Our states in TF Serving's ModelVersionStatus.State words (a failed load ends as END with an error;
# an unloaded or not aspired version is END with the reason as error_message).
STATES = {ModelState.LOADING: "LOADING", ModelState.AVAILABLE: "AVAILABLE",
          ModelState.UNLOADING: "UNLOADING", ModelState.FAILED: "END", ModelState.END: "END"}
DT_TYPES = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "bfloat16": "DT_BFLOAT16",
            "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64",
            "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32", "uint64": "DT_UINT64",
            "bool": "DT_BOOL", "string": "DT_STRING"}


def decode(http: Request, name: str, version: int | None, label: str | None = None) -> InferRequest:
    """A :predict body: `instances` (rows) or `inputs` (columns), optional `signature_name`.

    Any Content-Type is read as JSON, as TF Serving does (`curl -d` sends form-urlencoded)."""
    body = read_body(http.environ, settings().max_content_length)
    document = json_body.parse_object(body)
    envelope = json_body.fields(document)
    signature = envelope.get("signature_name")
    if signature not in (None, "", DEFAULT_SIGNATURE):
        raise errors.InvalidRequest(f"Serving signature name: {signature!r} not found in signature def; "
                                    f"Keras models have only {DEFAULT_SIGNATURE!r}")
    given = [key for key in ("instances", "inputs") if key in envelope]
    if len(given) != 1:
        raise errors.InvalidRequest("send exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if given == ["instances"] and not isinstance(envelope["instances"], json_body.Array):
        raise errors.InvalidRequest("'instances' must be a list with one entry per example")
    return decode_tensors(body, document, given[0], name, version, label)


def encode(decoded: InferRequest, response: InferResponse) -> Response:
    """Rows answer `predictions`, columns answer `outputs`; the version only in `X-Model-Version` (as TF Serving's
    body names none)."""
    headers = {VERSION_HEADER: str(response.version)}
    if decoded.row_format:
        return json_response({"predictions": as_rows(response.outputs)}, headers=headers)
    return json_response({"outputs": as_columns(response.outputs)}, headers=headers)


@bp.get("/v1/models/<name>")
@bp.get("/v1/models/<name>/versions/<int:version>")
def model_status(name: str, version: int | None = None) -> Response:
    """GetModelStatus: every version's state (or one version's), with error_code/error_message."""
    registry = dataplane().registry
    versions = registry.model_versions(name) if version is None else [registry.get(name, version)]
    held = registry.instance_states()  # a version is AVAILABLE only once it is in every worker
    return json_response({"model_version_status": [version_status(v, held.get((name, v.version)))
                                                    for v in versions]})


@bp.get("/v1/models/<name>/labels/<label>")
def label_status(name: str, label: str) -> Response:
    """GetModelStatus of the version a label routes to (404 label_not_found for an unknown label)."""
    registry = dataplane().registry
    target = label_target(name, label)
    try:
        servable = registry.get(name, target)
    except errors.VersionNotFound:  # the label names a version the folder does not hold (or no longer)
        return json_response({"model_version_status": [{"version": str(target), "state": "END", "status": {
            "error_code": "NOT_FOUND", "error_message": f"label {label!r} names version {target}, which is not "
                                                        "in the model folder"}}]})
    held = registry.instance_states().get((name, target))
    return json_response({"model_version_status": [version_status(servable, held)]})


@bp.get("/v1/models/<name>/metadata")
@bp.get("/v1/models/<name>/versions/<int:version>/metadata")
@bp.get("/v1/models/<name>/labels/<label>/metadata")
def model_metadata(name: str, version: int | None = None, label: str | None = None) -> Response:
    """GetModelMetadata: the `serving_default` signature_def of the version named (or the default one)."""
    servable = dataplane().resolve(name, version, label)
    return json_response({
        "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": {"signature_def": {DEFAULT_SIGNATURE: signature_def(servable)}}}})


@bp.post("/v1/models/<name>:predict")
@bp.post("/v1/models/<name>/versions/<int:version>:predict")
@bp.post("/v1/models/<name>/labels/<label>:predict")
def predict(name: str, version: int | None = None, label: str | None = None) -> Response:
    """Predict: `instances` answer `predictions`, `inputs` answer `outputs`; X-Model-Version names the version."""
    decoded = decode(request, name, version, label)
    return encode(decoded, dataplane().infer(decoded))


def label_target(name: str, label: str) -> int:
    """The version `label` routes to now (404 for an unknown model or label)."""
    registry = dataplane().registry
    route = registry.route(name)
    target = route.labels.get(label) if route is not None else None
    if target is None:
        registry.model_versions(name)  # an unknown model: 404 model_not_found
        raise errors.LabelNotFound(f"model {name!r} has no label {label!r}", {
            "model": name, "label": label, "labels": sorted(route.labels) if route is not None else []})
    return target.version if isinstance(target, ServableVersion) else target


def version_status(servable: ServableVersion, held: ModelState | None = None) -> dict[str, Any]:
    """One ModelVersionStatus: version as a string, state (`held` when another worker holds it back), status
    (a FAILED version: error_code UNKNOWN and its reason; an END one: OK and why it ended)."""
    failed, ended = servable.state is ModelState.FAILED, servable.state is ModelState.END
    return {"version": str(servable.version), "state": STATES[held or servable.state],
            "status": {"error_code": "UNKNOWN" if failed else "OK",
                       "error_message": (servable.error or "") if failed or ended else ""}}


def signature_def(servable: ServableVersion) -> dict[str, Any]:
    """The predict SignatureDef of a Keras model, as TF Serving renders it in JSON."""
    assert servable.signature is not None
    inputs = {spec.name: _tensor_info(spec, f"serving_default_{spec.name}:0") for spec in servable.signature.inputs}
    outputs = {spec.name: _tensor_info(spec, f"StatefulPartitionedCall:{index}")
               for index, spec in enumerate(servable.signature.outputs)}
    return {"inputs": inputs, "outputs": outputs, "method_name": PREDICT_METHOD, "defaults": {}}


def _tensor_info(spec: TensorSpec, tensor_name: str) -> dict[str, Any]:
    dims = [{"size": str(-1 if dim is None else dim), "name": ""} for dim in spec.shape]
    return {"dtype": DT_TYPES.get(spec.dtype, "DT_INVALID"), "tensor_shape": {"dim": dims, "unknown_rank": False},
            "name": tensor_name}
