"""The direct `POST /predict` route answers exactly as the Flask view: status, headers and body."""
from __future__ import annotations

import gzip
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from app.api.direct import DirectPredict

ROW = [1.0, 2.0, 3.0, 4.0]
RID = {"X-Request-ID": "same-id-both-ways"}
JSON = "application/json"
CASES = {  # name: (body, content type, extra headers)
    "rows": (json.dumps({"model": "dense", "instances": [ROW, ROW]}), JSON, {}),
    "full precision": (json.dumps({"model": "dense", "instances": [[0.8506242036819458, 0.1, 1e-7, -3.25]]}),
                       JSON, {}),
    "columns": (json.dumps({"model": "dense", "inputs": [ROW]}), JSON, {}),
    "named inputs": (json.dumps({"model": "two_inputs", "inputs": {"a": [ROW], "b": [[1, 2, 3]]}}), JSON, {}),
    "row objects": (json.dumps({"model": "two_inputs", "instances": [{"a": ROW, "b": [1, 2, 3]}]}), JSON, {}),
    "two outputs": (json.dumps({"model": "two_outputs", "instances": [[1, 2, 3, 4, 5, 6]]}), JSON, {}),
    "int64 beyond 2**53": (json.dumps({"model": "int64_identity", "instances": [[9007199254740993, 1, 2, 3]]}),
                           JSON, {}),
    "a version": (json.dumps({"model": "versioned", "version": 1, "instances": [ROW]}), JSON, {}),
    "+json media type": (json.dumps({"model": "dense", "instances": [ROW]}), "application/vnd.api+json", {}),
    "gzip": (gzip.compress(json.dumps({"model": "dense", "instances": [ROW]}).encode()), JSON,
             {"Content-Encoding": "gzip"}),
    "unknown model": (json.dumps({"model": "nope", "instances": [ROW]}), JSON, {}),
    "unknown version": (json.dumps({"model": "versioned", "version": 9, "instances": [ROW]}), JSON, {}),
    "unknown label": (json.dumps({"model": "dense", "label": "stable", "instances": [ROW]}), JSON, {}),
    "version and label": (json.dumps({"model": "versioned", "version": 1, "label": "x", "instances": [ROW]}),
                          JSON, {}),
    "not JSON": ('{"model": "dense", "instances": [[1,2', JSON, {}),
    "NaN": ('{"model": "dense", "instances": [[1,2,3,NaN]]}', JSON, {}),
    "ragged": (json.dumps({"model": "dense", "instances": [ROW, [1.0]]}), JSON, {}),
    "wrong shape": (json.dumps({"model": "dense", "instances": [[1.0, 2.0]]}), JSON, {}),
    "strings": (json.dumps({"model": "dense", "instances": [["a", "b", "c", "d"]]}), JSON, {}),
    "too many rows": (json.dumps({"model": "dense", "instances": [ROW] * 501}), JSON, {}),
    "no tensors": (json.dumps({"model": "dense"}), JSON, {}),
    "an unknown field": (json.dumps({"model": "dense", "instances": [ROW], "extra": 1}), JSON, {}),
    "not an object": ("[1, 2, 3]", JSON, {}),
    "empty body": ("", JSON, {}),
    "form data": ("a=1", "application/x-www-form-urlencoded", {}),
    "no content type": (json.dumps({"model": "dense", "instances": [ROW]}), None, {}),
    "cut gzip": (gzip.compress(b'{"model": "dense", "instances": [[1,2,3,4]]}')[:-4], JSON,
                 {"Content-Encoding": "gzip"}),
}


@pytest.fixture(scope="module")
def flask_app(model_repo):
    """The same app with SERVING_DIRECT_PREDICT=false: `/predict` through Flask's view."""
    application = create_app({"TESTING": True, "MODEL_DIR": model_repo, "STRICT_READINESS": False,
                              "MAX_REQUEST_ROWS": 500, "MAX_BATCH_SIZE": 16, "DIRECT_PREDICT": False})
    assert application.extensions["registry"].wait_until_settled(120)
    yield application
    application.extensions["registry"].close()


def answer(app, body, content_type, headers):
    response = app.test_client().post("/predict", data=body, content_type=content_type, headers={**RID, **headers})
    return response.status, sorted(response.headers.items()), response.data


def test_the_factory_puts_the_direct_route_in_front_of_flask_only_when_asked(app, flask_app):
    assert isinstance(app.extensions["load_shedder"].wsgi_app, DirectPredict)
    assert not isinstance(flask_app.extensions["load_shedder"].wsgi_app, DirectPredict)


@pytest.mark.parametrize("case", CASES)
def test_the_direct_route_answers_as_the_flask_view(app, flask_app, case):
    direct, through_flask = answer(app, *CASES[case]), answer(flask_app, *CASES[case])
    assert direct == through_flask
    assert direct[0].split()[0] in {"200", "400", "404", "413", "415", "422"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(envelope=st.dictionaries(
    st.sampled_from(["model", "version", "label", "instances", "inputs", "other"]),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                 max_leaves=12)))
def test_any_envelope_gets_the_same_answer_both_ways(app, flask_app, envelope):
    body = json.dumps(envelope)
    assert answer(app, body, JSON, {}) == answer(flask_app, body, JSON, {})


def test_other_methods_and_paths_go_through_flask(client):
    assert client.get("/predict").status_code == 405
    assert client.post("/predict/").status_code == 404
    assert client.options("/predict").json == {"allow": ["OPTIONS", "POST"]}


def test_a_bug_answers_500_with_the_request_id_and_logs_one_traceback(app, flask_app, monkeypatch, caplog):
    def broken(request):
        raise RuntimeError("a bug")

    for application in (app, flask_app):
        monkeypatch.setattr(application.extensions["dataplane"], "infer", broken)
    body = json.dumps({"model": "dense", "instances": [ROW]})
    with caplog.at_level(logging.ERROR):
        direct = answer(app, body, JSON, {})
        lines = [r for r in caplog.records if "unhandled error in POST /predict" in r.getMessage()]
        assert len(lines) == 1 and lines[0].exc_info is not None
        assert direct == answer(flask_app, body, JSON, {})
    assert direct[0] == "500 INTERNAL SERVER ERROR"
    assert json.loads(direct[2])["error"]["details"] == {"request_id": RID["X-Request-ID"]}
