"""Open Inference Protocol (KServe V2 / Triton) REST surface: health, metadata, config, infer.

Readiness endpoints answer by status code (200 ready, 400 not ready, as the V2 spec
says 4xx); errors are `{"error": "message"}`. Inference goes through the one data
plane (`app.api.dataplane.DataPlane`); `app.api.v2_codec` decodes and encodes the bodies.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from app.api import v2_codec
from app.api.body import read_body
from app.api.context import dataplane, settings
from app.api.native import VERSION_HEADER
from app.api.responses import json_response
from app.api.v2_datatypes import datatype_of, v2_shape
from app.serving.servable import ServableVersion
from app.serving.types import Signature

bp = Blueprint("v2", __name__)

SERVER_NAME = "keras-model-server"
SERVER_VERSION = "1.0.0"
PLATFORM = "keras"
# Only what exists: model_repository is the index, load and unload (app.api.repository).
EXTENSIONS = ["binary_tensor_data", "model_configuration", "model_repository"]
NOT_READY = 400  # the V2 spec: "a 4xx status code indicates false"


@bp.get("/v2")
def server_metadata() -> Response:
    """Server name, version and the protocol extensions it speaks."""
    return json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})


@bp.get("/v2/health/live")
def server_live() -> Response:
    """Liveness: 200 while the process serves."""
    return json_response({"live": True})


@bp.get("/v2/health/ready")
def server_ready() -> Response:
    """Readiness of the instance: 200 when every worker has every version ready (as /health/ready), else 400."""
    answer = dataplane().registry.instance_readiness()
    return json_response({"ready": answer.ready, **answer.details()}, status=200 if answer.ready else NOT_READY)


@bp.get("/v2/models/<name>/ready")
@bp.get("/v2/models/<name>/versions/<int:version>/ready")
def model_ready(name: str, version: int | None = None) -> Response:
    """200 when the model (version) is AVAILABLE in every worker, 400 when not (naming why), 404 when unknown."""
    served, held = dataplane().registry.model_readiness(name, version)
    if held:
        return json_response({"name": name, "version": str(served), "ready": False, "not_ready": held,
                              "error": f"model {name!r} version {served} is {held[0]['state']}"}, status=NOT_READY)
    return json_response({"name": name, "version": str(served), "ready": True})


@bp.get("/v2/models/<name>")
@bp.get("/v2/models/<name>/versions/<int:version>")
def model_metadata(name: str, version: int | None = None) -> Response:
    """Name, versions, platform and input/output tensors (-1 marks variable dimensions)."""
    servable = dataplane().resolve(name, version)
    signature = _signature(servable)
    return json_response({
        "name": name, "versions": [str(v.version) for v in dataplane().registry.model_versions(name)],
        "platform": PLATFORM,
        "inputs": [_tensor(spec.name, spec.dtype, spec.shape) for spec in signature.inputs],
        "outputs": [_tensor(spec.name, spec.dtype, spec.shape) for spec in signature.outputs]})


@bp.get("/v2/models/<name>/config")
@bp.get("/v2/models/<name>/versions/<int:version>/config")
def model_config(name: str, version: int | None = None) -> Response:
    """Triton-style model configuration: max_batch_size, inputs/outputs without the batch dim, batching."""
    servable = dataplane().resolve(name, version)
    return json_response(triton_config(servable, dataplane().max_request_rows))


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<int:version>/infer")
def model_infer(name: str, version: int | None = None) -> Response:
    """Run a model on JSON or binary tensors; answer with JSON or binary outputs as asked."""
    decoded = v2_codec.decode(_body(), request.headers.get(v2_codec.HEADER_LENGTH), name, version)
    response = dataplane().infer(decoded)
    body, header_length = v2_codec.encode(decoded, response)
    if header_length is None:
        return Response(body, mimetype="application/json", headers={VERSION_HEADER: str(response.version)})
    return Response(body, mimetype="application/octet-stream", headers={
        v2_codec.HEADER_LENGTH: str(header_length), VERSION_HEADER: str(response.version)})


def _body() -> bytes:
    return read_body(request.environ, settings().max_content_length)


def triton_config(servable: ServableVersion, max_request_rows: int) -> dict[str, Any]:
    """The model configuration in Triton's JSON form (what tritonclient's get_model_config reads)."""
    signature, batching = _signature(servable), servable.source.batching
    return {
        "name": servable.name, "platform": PLATFORM, "backend": PLATFORM, "version_policy": {"all": {}},
        "max_batch_size": batching.max_batch_size,
        "input": [{"name": s.name, "data_type": _config_type(s.dtype), "format": "FORMAT_NONE",
                   "dims": v2_shape(s.shape[1:])} for s in signature.inputs],
        "output": [{"name": s.name, "data_type": _config_type(s.dtype), "dims": v2_shape(s.shape[1:])}
                   for s in signature.outputs],
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(batching.max_batch_delay_ms * 1000),
            "default_queue_policy": {"timeout_action": "REJECT", "allow_timeout_override": False,
                                     "default_timeout_microseconds": round(batching.request_timeout * 1e6)}},
        "parameters": {key: {"string_value": str(value)}
                       for key, value in {**batching.to_dict(), "max_request_rows": max_request_rows}.items()},
    }


def _signature(servable: ServableVersion) -> Signature:
    assert servable.signature is not None  # resolve() returns AVAILABLE versions only
    return servable.signature


def _tensor(name: str, dtype: str, shape: tuple[int | None, ...]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype_of(dtype), "shape": v2_shape(shape)}


def _config_type(dtype: str) -> str:
    datatype = datatype_of(dtype)
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
