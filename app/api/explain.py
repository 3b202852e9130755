"""Explanations: native POST /explain and TF Serving style POST /v1/models/NAME[/versions/V|/labels/L]:explain.

The /predict envelope plus `method`, `target`, `baseline` and `steps` (native: at the top level;
/v1: under `parameters`, the verb KServe's V1 protocol uses). Checks come in the data plane's order
(envelope, model, inputs), then the explanation runs in the explain lane (app.serving.explain_lane).
"""
from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, Request, Response, current_app, request

from app import errors
from app.api import json_body
from app.api.body import read_body
from app.api.context import dataplane, settings
from app.api.dataplane import InferRequest, bind_inputs
from app.api.explain_options import OPTION_KEYS, method_and_steps, options_for
from app.api.instances import decode_tensors
from app.api.native import VERSION_HEADER, require_json
from app.api.responses import json_response
from app.api.schemas import load_predict_request
from app.api.tfserving import DEFAULT_SIGNATURE
from app.observability.facts import note_explain_method, note_rows, note_servable
from app.serving.explain_lane import ExplainLane
from app.serving.tensors import conform

bp = Blueprint("explain", __name__)
_lane_lock = threading.Lock()


def lane() -> ExplainLane:
    """This app's explain lane, made on first use from the SERVING_EXPLAIN_* settings."""
    extensions = current_app.extensions
    if "explain_lane" not in extensions:
        with _lane_lock:
            if "explain_lane" not in extensions:
                config = settings()
                extensions["explain_lane"] = ExplainLane(config.explain_threads, config.explain_queue,
                                                         config.explain_timeout)
    return extensions["explain_lane"]


def decode_native(http: Request) -> tuple[InferRequest, dict[str, Any]]:
    """A /explain body: the /predict envelope plus the explain options at its top level."""
    require_json(http.environ)
    body = read_body(http.environ, settings().max_content_length)
    document = json_body.parse_object(body)
    envelope = json_body.fields(document)
    options = {key: json_body.plain(envelope.pop(key)) for key in OPTION_KEYS if key in envelope}
    checked = load_predict_request(envelope)
    key = "instances" if "instances" in checked else "inputs"
    return decode_tensors(body, document, key, checked["model"], checked["version"], checked["label"]), options


def decode_tfserving(http: Request, name: str, version: int | None,
                     label: str | None = None) -> tuple[InferRequest, dict[str, Any]]:
    """A :explain body: `instances` or `inputs`, optional `signature_name`, options under `parameters`."""
    body = read_body(http.environ, settings().max_content_length)
    document = json_body.parse_object(body)
    envelope = json_body.fields(document)
    if envelope.get("signature_name") not in (None, "", DEFAULT_SIGNATURE):
        raise errors.InvalidRequest(f"Serving signature name: {envelope['signature_name']!r} not found in "
                                    f"signature def; Keras models have only {DEFAULT_SIGNATURE!r}")
    given = [key for key in ("instances", "inputs") if key in envelope]
    if len(given) != 1:
        raise errors.InvalidRequest("send exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if given == ["instances"] and not isinstance(envelope["instances"], json_body.Array):
        raise errors.InvalidRequest("'instances' must be a list with one entry per example")
    parameters = json_body.plain(envelope.get("parameters", {}))
    if not isinstance(parameters, dict) or set(parameters) - set(OPTION_KEYS):
        raise errors.InvalidRequest(f"'parameters' must be an object of {', '.join(OPTION_KEYS)}",
                                    {"allowed": list(OPTION_KEYS)})
    return decode_tensors(body, document, given[0], name, version, label), parameters


def explain_request(decoded: InferRequest, options: dict[str, Any]) -> dict[str, Any]:
    """Run one explanation: options, model, inputs (rows up to SERVING_MAX_EXPLAIN_ROWS), then the lane."""
    config = settings()
    method, steps = method_and_steps(options, config.max_explain_steps)
    note_explain_method(method)  # for keras_serve_explain_* and the access line
    servable = dataplane().resolve(decoded.model, decoded.version, decoded.label)
    note_servable(servable.name, servable.version)  # for the access line
    signature = servable.signature
    assert signature is not None
    try:
        arrays, rows = conform(bind_inputs(decoded, signature), signature, config.max_explain_rows)
    except errors.TooManyRows as exc:
        raise errors.InvalidRequest(f"{exc.details['rows']} rows exceed the limit of {config.max_explain_rows} "
                                    "per explanation (SERVING_MAX_EXPLAIN_ROWS)", exc.details,
                                    code="too_many_rows") from None
    note_rows(rows)
    explain_lane = lane()
    checked = options_for(method, steps, options, arrays, signature, explain_lane.deadline())
    explanation = explain_lane.explain(servable, arrays, checked)
    return {"model": servable.name, "version": servable.version, "method": method,
            "steps": steps if method == "integrated_gradients" else None,
            "explanations": explanation.to_dict(), "notes": explanation.notes}


@bp.post("/explain")
def explain() -> Response:
    """Attributions of each input for one output of a model, per row (integrated gradients by default)."""
    decoded, options = decode_native(request)
    answer = explain_request(decoded, options)
    return json_response(answer, headers={VERSION_HEADER: str(answer["version"])})


@bp.post("/v1/models/<name>:explain")
@bp.post("/v1/models/<name>/versions/<int:version>:explain")
@bp.post("/v1/models/<name>/labels/<label>:explain")
def explain_tfserving(name: str, version: int | None = None, label: str | None = None) -> Response:
    """TF Serving style explain: `instances` or `inputs`, options under `parameters`; answers `explanations`."""
    decoded, options = decode_tfserving(request, name, version, label)
    answer = explain_request(decoded, options)
    return json_response({key: value for key, value in answer.items() if key not in ("model", "version")},
                         headers={VERSION_HEADER: str(answer["version"])})
