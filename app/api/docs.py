"""GET /openapi.json (built once per worker, on first use) and Swagger UI at /docs from the packaged copy."""
from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs", __name__, static_folder=str(swagger_ui_path), static_url_path="/docs")

# Swagger UI's own index page, with its files under docs/ (relative: the page works behind a path prefix).
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<title>Keras model server: API</title>
<link rel="stylesheet" type="text/css" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js" charset="UTF-8"></script>
<script src="docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
<script>
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"
  });
};
</script>
</body>
</html>
"""


def document_bytes() -> bytes:
    """The app's OpenAPI document as JSON, built on first use and kept in `app.extensions`."""
    cached = current_app.extensions.get("openapi")
    if cached is None:
        from app.api.openapi import build_document  # apispec loads only when the document is asked for

        cached = orjson.dumps(build_document(current_app.url_map))
        current_app.extensions["openapi"] = cached
    return cached


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3 document of every surface."""
    return Response(document_bytes(), mimetype="application/json")


@bp.get("/docs")
def swagger_ui() -> Response:
    """Swagger UI over /openapi.json, its files served from the swagger_ui_bundle package."""
    return Response(PAGE, mimetype="text/html")
