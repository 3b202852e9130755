"""The operations of the OpenAPI document, by (Flask rule, method): bodies, answers and the error statuses each
can give (`app.api.openapi` adds the path parameters, 401/403/500 and each surface's error shape)."""
from __future__ import annotations

from typing import Any

from app.api import api_schemas as native
from app.api import api_schemas_models as models
from app.api import api_schemas_v2 as v2
from app.api import explain_schemas as explain
from app.api.v2_codec import HEADER_LENGTH

STATUS_TEXT = {
    400: "malformed: body, envelope or tensors (on /v1 and /v2 also inputs that do not fit the signature, too "
         "many rows, an unsupported media type or Content-Encoding)",
    401: "a bearer token is needed (Authorization: Bearer TOKEN)", 403: "management is disabled: no token is set",
    404: "unknown model, version or label",
    413: "the body is over SERVING_MAX_CONTENT_LENGTH (native: or too many rows)",
    415: "the body is not labelled application/json, or its Content-Encoding is neither gzip nor deflate",
    422: "the inputs do not fit the model's signature (names, rows, shape, dtype)",
    429: "overloaded: retry after Retry-After seconds", 500: "a bug: the log has the traceback (X-Request-ID)",
    503: "the version (or the label's version) is LOADING, FAILED, UNLOADING or END",
    504: "not answered within SERVING_REQUEST_TIMEOUT (load and unload: SERVING_CONTROL_TIMEOUT, naming the workers)",
}
INFERENCE_ERRORS = (400, 404, 413, 429, 503, 504)
# Never behind a token (probes carry none).
PUBLIC_PATHS = frozenset({"/health", "/health/ready", "/v2/health/live", "/v2/health/ready",
                          "/v2/models/{name}/ready", "/v2/models/{name}/versions/{version}/ready"})


def _json(schema: Any, description: str = "OK", **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


def _body(schema: Any, example: dict[str, Any] | None = None, required: bool = True) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": required, "content": {"application/json": media}}


IRIS = {"instances": [native.IRIS_ROW]}
V2_IRIS = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": native.IRIS_ROW}]}
BINARY = {"type": "string", "format": "binary", "description": f"a JSON header of {HEADER_LENGTH} bytes, then "
          "each binary tensor's little-endian bytes in order"}
BINARY_HEADER = {"name": HEADER_LENGTH, "in": "header", "required": False, "schema": {"type": "integer", "minimum": 1},
                 "description": "binary tensor extension: the size of the JSON header that starts the body"}


LABEL = {"name": "label", "in": "path", "required": True, "description": "a label of serving.json `labels`",
         "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$", "example": "stable"}}
VERSION_HEADER = {"X-Model-Version": {"schema": {"type": "string", "example": "1"},
                                      "description": "the version that computed this answer"}}


def _predict_native() -> dict[str, Any]:
    return {"summary": "Run a model on rows (`instances`) or columns (`inputs`), by version or label",
            "requestBody": _body(native.PredictRequest, IRIS),
            "responses": {"200": _json(native.PredictResponse, headers=VERSION_HEADER)},
            "errors": (*INFERENCE_ERRORS, 415, 422)}


def _infer_v2() -> dict[str, Any]:
    binary = {"schema": BINARY}
    return {"summary": "Run a model on JSON or binary tensors",
            "parameters": [BINARY_HEADER],
            "requestBody": {"required": True, "content": {"application/json": {"schema": v2.V2InferRequest,
                                                                               "example": V2_IRIS},
                                                          "application/octet-stream": binary}},
            "responses": {"200": {"description": "JSON outputs, or binary outputs after a JSON header",
                                  "content": {"application/json": {"schema": v2.V2InferResponse},
                                              "application/octet-stream": binary},
                                  "headers": {HEADER_LENGTH: {"schema": {"type": "integer"}, "description":
                                                              "with a binary answer: its JSON header's size"},
                                              **VERSION_HEADER}}},
            "errors": INFERENCE_ERRORS}


def _both(rule: str, versioned: str, operation: dict[str, Any], method: str = "GET") -> dict[tuple[str, str], Any]:
    """The same operation on a model's latest version and on one version."""
    return {(rule, method): operation, (versioned, method): operation}


def _v1(suffix: str, operation: dict[str, Any], method: str = "GET") -> dict[tuple[str, str], Any]:
    """A /v1 operation on the model's default version, on one version and on the version a label names."""
    labelled = {**operation, "parameters": [LABEL, *operation.get("parameters", [])],
                "errors": (*operation.get("errors", ()), 404)}
    return {(f"/v1/models/<name>{suffix}", method): operation,
            (f"/v1/models/<name>/versions/<int:version>{suffix}", method): operation,
            (f"/v1/models/<name>/labels/<label>{suffix}", method): labelled}


def _control(summary: str, request: Any) -> dict[str, Any]:
    return {"summary": f"{summary} (management: needs a token); answers once every worker carried it out",
            "requestBody": _body(request, required=False), "responses": {"200": _json(models.V2Empty)},
            "errors": (400, 404, 413, 504), "management": True}


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/predict", "POST"): _predict_native(),
    ("/explain", "POST"): {
        "summary": "Attributions of each input for one output, per row (docs/explain.md)",
        "requestBody": _body(explain.ExplainRequest, {**IRIS, "method": "integrated_gradients"}),
        "responses": {"200": _json(explain.ExplainResponse, headers=VERSION_HEADER)},
        "errors": (*INFERENCE_ERRORS, 415, 422)},
    **_v1(":explain", {
        "summary": "Explain: attributions per row, options under `parameters` (KServe V1's verb)",
        "requestBody": _body(explain.TFExplainRequest, {**IRIS, "parameters": {"method": "saliency"}}),
        "responses": {"200": _json(explain.TFExplainResponse, headers=VERSION_HEADER)},
        "errors": INFERENCE_ERRORS}, "POST"),
    ("/models", "GET"): {"summary": "Every model and the state of each version",
                         "responses": {"200": _json(models.ModelList)}},
    ("/models/<name>", "GET"): {"summary": "One model: every version's signature, source and statistics",
                                "responses": {"200": _json(models.ModelDetail)}, "errors": (404,)},
    ("/models/<name>/versions/<int:version>", "GET"): {
        "summary": "One version of one model", "responses": {"200": _json(models.NamedVersionDetail)},
        "errors": (404,)},
    ("/health", "GET"): {"summary": "Liveness", "responses": {"200": _json(native.Health)}},
    ("/health/ready", "GET"): {"summary": "Readiness: 200 when every model version is AVAILABLE",
                               "responses": {"200": _json(native.Readiness),
                                             "503": _json(native.Readiness, "not ready: what is missing")}},
    ("/metrics", "GET"): {"summary": "Prometheus metrics of the instance",
                          "token_rule": "SERVING_METRICS_TOKEN_REQUIRED=true",
                          "responses": {"200": {"description": "the text exposition format",
                                                "content": {"text/plain": {"schema": {"type": "string"}}}}}},
    ("/openapi.json", "GET"): {"summary": "This document",
                               "responses": {"200": _json({"type": "object"})}},
    ("/docs", "GET"): {"summary": "Swagger UI over this document",
                       "responses": {"200": {"description": "the page",
                                             "content": {"text/html": {"schema": {"type": "string"}}}}}},
    ("/docs/<path:filename>", "GET"): {
        "summary": "Swagger UI's static files", "parameters": [
            {"name": "filename", "in": "path", "required": True, "schema": {"type": "string",
                                                                            "example": "swagger-ui.css"}}],
        "responses": {"200": {"description": "the file", "content": {"*/*": {"schema": BINARY | {"description":
                                                                                                  "the file"}}}}},
        "errors": (404,)},
    **_v1("", {
        "summary": "GetModelStatus: the state of every version (or one; or the one a label names)",
        "responses": {"200": _json(native.TFModelStatus)}, "errors": (404,)}),
    **_v1("/metadata", {
        "summary": "GetModelMetadata: the serving_default signature_def",
        "responses": {"200": _json(native.TFMetadata)}, "errors": (404, 503)}),
    **_v1(":predict", {
        "summary": "Predict: `instances` answer `predictions`, `inputs` answer `outputs`",
        "requestBody": _body(native.TFPredictRequest, IRIS),
        "responses": {"200": _json(native.TFPredictResponse, headers=VERSION_HEADER)},
        "errors": INFERENCE_ERRORS}, "POST"),
    ("/v2", "GET"): {"summary": "Server metadata", "responses": {"200": _json(v2.V2ServerMetadata)}},
    ("/v2/health/live", "GET"): {"summary": "Liveness", "responses": {"200": _json(v2.V2Live)}},
    ("/v2/health/ready", "GET"): {"summary": "Readiness: 200 ready, 400 not ready",
                                  "responses": {"200": _json(v2.V2Ready), "400": _json(v2.V2Ready, "not ready")}},
    **_both("/v2/models/<name>/ready", "/v2/models/<name>/versions/<int:version>/ready", {
        "summary": "Model readiness: 200 ready, 400 loading or failed",
        "responses": {"200": _json(v2.V2ModelReady), "400": _json(v2.V2ModelReady, "not ready")},
        "errors": (404,)}),
    **_both("/v2/models/<name>", "/v2/models/<name>/versions/<int:version>", {
        "summary": "Model metadata: inputs and outputs with datatype and shape",
        "responses": {"200": _json(v2.V2ModelMetadata)}, "errors": (404, 503)}),
    **_both("/v2/models/<name>/config", "/v2/models/<name>/versions/<int:version>/config", {
        "summary": "Triton-style model configuration",
        "responses": {"200": _json(v2.V2ModelConfig)}, "errors": (404, 503)}),
    ("/v2/repository/index", "POST"): {
        "summary": "Every model version and its state (UNAVAILABLE: failed or END, with the reason; management: "
                   "needs a token)",
        "requestBody": _body(v2.V2IndexRequest, required=False),
        "responses": {"200": _json(v2.V2IndexEntry(many=True))},
        "errors": (400, 413), "management": True},
    ("/v2/repository/models/<name>/load", "POST"): _control(
        "Load: re-read the model's folder and settings, `parameters.config` replacing serving.json",
        models.V2LoadRequest),
    ("/v2/repository/models/<name>/unload", "POST"): _control(
        "Unload every version of the model until the next load", models.V2UnloadRequest),
    **_both("/v2/models/<name>/infer", "/v2/models/<name>/versions/<int:version>/infer", _infer_v2(), "POST"),
}
