"""/openapi.json and /docs: a valid OpenAPI 3 document of every route, Swagger UI from the packaged copy.

Also the bugs the schemathesis run (tests/e2e/test_schemathesis.py) found, each held here in a plain test.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from swagger_ui_bundle import swagger_ui_path

from app.api.openapi import AUTOMATIC_METHODS, openapi_path

FLASK_STATIC = "static"  # Flask's own /static/<path:filename>: no static folder, always 404


@pytest.fixture(scope="module")
def document(app):
    return app.test_client().get("/openapi.json").get_json()


def test_the_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_route_of_the_app_is_in_the_document_and_nothing_else(app, document):
    routes = {(openapi_path(rule.rule), method.lower()) for rule in app.url_map.iter_rules()
              if rule.endpoint != FLASK_STATIC for method in rule.methods - AUTOMATIC_METHODS}
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert routes - documented == set(), "routes without an entry in app/api/openapi_paths.py"
    assert documented - routes == set()
    assert len(routes) >= 27


def test_every_error_answer_has_its_surfaces_error_shape(document):
    readiness = {"/health/ready", "/v2/health/ready", "/v2/models/{name}/ready",
                 "/v2/models/{name}/versions/{version}/ready"}
    for path, operations in document["paths"].items():
        expected = "MessageError" if path.startswith(("/v1/", "/v2")) else "NativeError"
        for method, operation in operations.items():
            errors = {status: answer for status, answer in operation["responses"].items() if int(status) >= 400}
            assert "500" in errors, (method, path)
            for status, answer in errors.items():
                if path in readiness and status in ("400", "503"):
                    continue  # a not-ready answer, not an error
                schema = answer["content"]["application/json"]["schema"]["$ref"]
                assert schema == f"#/components/schemas/{expected}", (method, path, status)


def test_inference_operations_list_every_status_they_can_answer(document):
    paths = document["paths"]
    assert set(paths["/predict"]["post"]["responses"]) >= {"200", "400", "401", "404", "413", "415", "422",
                                                           "429", "500", "503", "504"}
    for path in ("/v1/models/{name}:predict", "/v2/models/{name}/versions/{version}/infer"):
        assert set(paths[path]["post"]["responses"]) >= {"200", "400", "401", "404", "413", "429", "500",
                                                         "503", "504"}
    assert "Retry-After" in paths["/predict"]["post"]["responses"]["429"]["headers"]
    assert set(paths["/v2/repository/index"]["post"]["responses"]) >= {"200", "401", "403"}


def test_v2_infer_documents_the_binary_extension(document):
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        operation = document["paths"][path]["post"]
        header = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [p["name"] for p in header] == ["Inference-Header-Content-Length"]
        assert set(operation["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
        answer = operation["responses"]["200"]
        assert set(answer["content"]) == {"application/json", "application/octet-stream"}
        assert "Inference-Header-Content-Length" in answer["headers"]


def test_native_error_and_message_error_shapes(document):
    schemas = document["components"]["schemas"]
    assert schemas["MessageError"]["properties"]["error"]["type"] == "string"
    body = schemas["NativeErrorBody"]
    assert set(body["required"]) == {"code", "message", "details"}


def test_the_document_is_built_once_per_app_and_then_served_as_is(app):
    client = app.test_client()
    first = client.get("/openapi.json")
    cached = app.extensions["openapi"]
    second = client.get("/openapi.json")
    assert first.status_code == second.status_code == 200 and first.mimetype == "application/json"
    assert first.data == second.data == cached and app.extensions["openapi"] is cached


def test_docs_serve_swagger_ui_whose_files_all_come_from_the_package(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {"docs/swagger-ui-bundle.js", "docs/swagger-ui.css"} <= set(assets)
    assert not re.search(r"https?://", html), "the page must load nothing from the internet"
    assert 'url: "openapi.json"' in html
    for asset in assets:
        served = client.get("/" + asset)
        assert served.status_code == 200, asset
        assert served.data == (Path(str(swagger_ui_path)) / asset.removeprefix("docs/")).read_bytes()


def test_an_unknown_docs_file_answers_404_json(client):
    answer = client.get("/docs/nope.js")
    assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found"


def conforms(document: dict, path: str, method: str, answer) -> None:
    """Raise unless `answer` (a Flask test response) is one the document lists for that operation."""
    documented = document["paths"][path][method]["responses"]
    assert str(answer.status_code) in documented, (path, answer.status_code, answer.data[:300])
    schema = documented[str(answer.status_code)]["content"][answer.mimetype]["schema"]
    OAS30Validator({**schema, "components": document["components"]}).validate(answer.get_json())


REAL_ANSWERS = [  # (path in the document, method, path asked, JSON body)
    ("/models", "get", "/models", None),
    ("/models/{name}", "get", "/models/corrupt", None),
    ("/models/{name}", "get", "/models/two_outputs", None),
    ("/models/{name}/versions/{version}", "get", "/models/versioned/versions/2", None),
    ("/health/ready", "get", "/health/ready", None),
    ("/predict", "post", "/predict", {"model": "two_outputs", "instances": [[0.1] * 6]}),
    ("/predict", "post", "/predict", {"model": "two_inputs", "inputs": {"a": [[1.0] * 4], "b": [[1.0] * 3]}}),
    ("/predict", "post", "/predict", {"model": "dense", "instances": [[1.0, 2.0]]}),
    ("/predict", "post", "/predict", {"model": "corrupt", "instances": [[1.0]]}),
    ("/v1/models/{name}", "get", "/v1/models/corrupt", None),
    ("/v1/models/{name}/metadata", "get", "/v1/models/two_inputs/metadata", None),
    ("/v1/models/{name}/metadata", "get", "/v1/models/corrupt/metadata", None),
    ("/v1/models/{name}:predict", "post", "/v1/models/two_outputs:predict", {"instances": [[0.1] * 6]}),
    ("/v1/models/{name}:predict", "post", "/v1/models/two_outputs:predict", {"inputs": [[0.1] * 6]}),
    ("/v2/health/ready", "get", "/v2/health/ready", None),
    ("/v2/models/{name}/ready", "get", "/v2/models/corrupt/ready", None),
    ("/v2/models/{name}", "get", "/v2/models/int64_identity", None),
    ("/v2/models/{name}/config", "get", "/v2/models/cnn/config", None),
    ("/v2/repository/index", "post", "/v2/repository/index", None),
    ("/v1/models/{name}/labels/{label}", "get", "/v1/models/dense/labels/stable", None),
    ("/v1/models/{name}/labels/{label}:predict", "post", "/v1/models/dense/labels/stable:predict",
     {"instances": [[1.0] * 4]}),
    ("/v2/repository/models/{name}/load", "post", "/v2/repository/models/dense/load", None),
    ("/v2/models/{name}/infer", "post", "/v2/models/two_outputs/infer",
     {"id": "7", "inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP32", "data": [0.1] * 6}]}),
    ("/v2/models/{name}/infer", "post", "/v2/models/nope/infer",
     {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}),
]


@pytest.mark.parametrize("path, method, asked, body", REAL_ANSWERS, ids=[f"{m} {a}" for _, m, a, _ in REAL_ANSWERS])
def test_real_answers_of_every_kind_of_model_conform_to_the_document(client, document, path, method, asked, body):
    answer = client.open(asked, method=method.upper(), json=body)
    conforms(document, path, method, answer)


MANAGED_ANSWERS = [  # (path in the document, path asked, JSON body): with the management token
    ("/v2/repository/index", "/v2/repository/index", {"ready": True}),
    ("/v2/repository/models/{name}/load", "/v2/repository/models/dense/load", None),
    ("/v2/repository/models/{name}/load", "/v2/repository/models/nope/load", None),
    ("/v2/repository/models/{name}/load", "/v2/repository/models/dense/load", {"parameters": {"config": "{"}}),
    ("/v2/repository/models/{name}/unload", "/v2/repository/models/nope/unload", None),
]


@pytest.mark.parametrize("path, asked, body", MANAGED_ANSWERS, ids=[a for _, a, _ in MANAGED_ANSWERS])
def test_repository_answers_with_the_token_conform_to_the_document(client, document, management_headers, path,
                                                                   asked, body):
    conforms(document, path, "post", client.post(asked, json=body, headers=management_headers))


def test_label_routes_document_the_label_and_inference_answers_the_version_header(document):
    paths = document["paths"]
    for path in ("/v1/models/{name}/labels/{label}", "/v1/models/{name}/labels/{label}/metadata"):
        assert [p["name"] for p in paths[path]["get"]["parameters"]] == ["name", "label"]
    for path in ("/v1/models/{name}/labels/{label}:predict", "/v1/models/{name}/labels/{label}:explain"):
        assert [p["name"] for p in paths[path]["post"]["parameters"]] == ["name", "label"]
    for path in ("/predict", "/explain", "/v1/models/{name}:predict", "/v1/models/{name}/versions/{version}:predict",
                 "/v1/models/{name}/labels/{label}:predict", "/v1/models/{name}/labels/{label}:explain",
                 "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        assert "X-Model-Version" in paths[path]["post"]["responses"]["200"]["headers"], path
    assert "label" in document["components"]["schemas"]["PredictRequest"]["properties"]


def test_load_and_unload_are_management_operations(document):
    for action in ("load", "unload"):
        operation = document["paths"][f"/v2/repository/models/{{name}}/{action}"]["post"]
        assert operation["security"] == [{"bearer": []}]
        assert set(operation["responses"]) >= {"200", "400", "401", "403", "404", "500", "504"}
        assert operation["requestBody"]["required"] is False


# --- found by schemathesis ---

@pytest.mark.parametrize("path, body", [
    ("/predict", b'{"model": "dense", "instances": [{"features\\u0000": [1, 2, 3, 4]}]}'),
    ("/predict", b'{"model\\u0000": 1, "instances": [[1, 2, 3, 4]]}'),
    ("/v1/models/dense:predict", b'{"a\\u0000b": {"x\\u0000": [1]}, "instances": [[1, 2, 3, 4]]}'),
    ("/v1/models/dense:predict", b'{"inputs": {"features\\u0000": [[1, 2, 3, 4]]}}'),
    ("/v2/models/dense/infer", b'{"inputs": [{"name": "features", "x\\u0000": 1, "shape": [1, 4], '
                               b'"datatype": "FP32", "data": [1, 2, 3, 4]}]}'),
])
def test_a_json_key_holding_nul_is_read_not_a_500(client, path, body):
    answer = client.post(path, data=body, content_type="application/json")
    assert answer.status_code in (200, 400, 422), answer.data


def test_a_nul_key_beside_a_tensor_leaves_the_answer_unchanged(client):
    plain = client.post("/v1/models/dense:predict", data=b'{"instances": [[1, 2, 3, 4]]}')
    with_nul = client.post("/v1/models/dense:predict", data=b'{"x\\u0000": [[9]], "instances": [[1, 2, 3, 4]]}')
    assert plain.status_code == with_nul.status_code == 200 and plain.data == with_nul.data


@pytest.mark.parametrize("path", ["/models/dense/versions/99999999999999999999999",
                                  "/v1/models/dense/versions/99999999999999999999999",
                                  "/v2/models/dense/versions/99999999999999999999999/ready"])
def test_a_version_beyond_64_bits_is_no_route_not_a_500(client, path):
    assert client.get(path).status_code == 404


def test_a_version_of_64_bits_is_unknown(client):
    assert client.get(f"/models/dense/versions/{2**63 - 1}").get_json()["error"]["code"] == "version_not_found"


@pytest.mark.parametrize("path, allowed", [("/predict", "OPTIONS, POST"), ("/v2/models/dense/infer", "OPTIONS, POST"),
                                           ("/models", "GET, HEAD, OPTIONS")])
def test_a_405_names_the_allowed_methods(client, path, allowed):
    answer = client.delete(path)
    assert answer.status_code == 405 and answer.headers["Allow"] == allowed
