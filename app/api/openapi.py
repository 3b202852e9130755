"""The OpenAPI 3 document of every surface, built with apispec from the marshmallow schemas of
`app.api.api_schemas` and `app.api.api_schemas_v2` and from the app's own URL map.

Each route's operations come from `app.api.openapi_paths.OPERATIONS` (keyed by Flask rule and method);
`tests/api/test_openapi.py` checks that every route of the URL map has its entry.
"""
from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from werkzeug.routing import Map

from app.api import api_schemas
from app.api.openapi_paths import OPERATIONS, PUBLIC_PATHS, STATUS_TEXT
from app.api.responses import style_for_path
from app.api.routing import MAX_VERSION
from app.api.v2 import SERVER_VERSION

OPENAPI_VERSION = "3.0.3"  # what the packaged Swagger UI (4.x) renders
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # Flask adds them to every GET / every route
_CONVERTER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
PARAMETERS = {
    "name": {"name": "name", "in": "path", "required": True, "description": "the model's name",
             "schema": api_schemas.MODEL_NAME},
    "version": {"name": "version", "in": "path", "required": True, "description": "the model's version",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION, "example": 1}},
}
ERROR_SCHEMAS = {"native": api_schemas.NativeError, "tfserving": api_schemas.MessageError,
                 "v2": api_schemas.MessageError}


def openapi_path(rule: str) -> str:
    """A Flask rule in OpenAPI's words: `/models/<int:version>` -> `/models/{version}`."""
    return _CONVERTER.sub(lambda match: "{" + match.group(2) + "}", rule)


def build_document(url_map: Map) -> dict[str, Any]:
    """The OpenAPI document of every documented route of `url_map` (routes without an entry are left out)."""
    spec = APISpec(title="Keras model server", version=SERVER_VERSION, openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()], info={"description": (
                       "Three surfaces over the same models: native (`/predict`, `/models`, `/health`), "
                       "TensorFlow Serving REST (`/v1`) and the Open Inference Protocol (`/v2`, with "
                       "Triton's binary tensor extension). Errors: `{\"error\": {\"code\", \"message\", "
                       "\"details\"}}` on native paths, `{\"error\": \"message\"}` on /v1 and /v2.")})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.header("Retry-After", {"description": "seconds to wait before retrying",
                                           "schema": {"type": "integer"}})
    spec.components.header("WWW-Authenticate", {"schema": {"type": "string"}})
    rules: dict[str, set[str]] = {}
    for rule in url_map.iter_rules():
        rules.setdefault(rule.rule, set()).update((rule.methods or set()) - AUTOMATIC_METHODS)
    for rule in sorted(rules):
        operations = {method.lower(): _operation(rule, method) for method in sorted(rules[rule])
                      if (rule, method) in OPERATIONS}
        if operations:
            spec.path(path=openapi_path(rule), operations=operations)
    return spec.to_dict()


def _operation(rule: str, method: str) -> dict[str, Any]:
    """One operation: its entry in OPERATIONS with path parameters, error responses and security added."""
    entry = dict(OPERATIONS[(rule, method)])
    path, style = openapi_path(rule), style_for_path(openapi_path(rule))
    responses = dict(entry.pop("responses"))
    statuses = set(entry.pop("errors", ()))
    management = entry.pop("management", False)
    token_rule = entry.pop("token_rule", "SERVING_REQUIRE_TOKEN=true")
    if path not in PUBLIC_PATHS:
        statuses.add(401)
        entry["security"] = [{"bearer": []}] if management else [{}, {"bearer": []}]
    if management:
        statuses.add(403)
    statuses.add(500)
    for status in sorted(statuses):
        responses.setdefault(str(status), _error_response(status, style, None if management else token_rule))
    entry["responses"] = responses
    names = re.findall(r"{(\w+)}", path)
    if names:
        entry["parameters"] = [PARAMETERS[name] for name in names if name in PARAMETERS] + entry.get("parameters", [])
    entry.setdefault("tags", [{"native": "native", "tfserving": "TF Serving REST", "v2": "Open Inference "
                               "Protocol (V2)"}[style]])
    return entry


def _error_response(status: int, style: str, token_rule: str | None) -> dict[str, Any]:
    """An error answer in the surface's shape, with the headers that status carries (401: when `token_rule` holds)."""
    text = STATUS_TEXT[status]
    if status == 401 and token_rule:
        text = f"{text} (with {token_rule})"
    response: dict[str, Any] = {"description": text,
                                "content": {"application/json": {"schema": ERROR_SCHEMAS[style]}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}}
    return response
