"""Triton's model-repository RPCs over gRPC (tritonclient.grpc) on real gunicorn with two workers."""
from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from tests import model_builders as mb
from tests.support import free_port, running_server

grpcclient = pytest.importorskip("tritonclient.grpc")
grpc = pytest.importorskip("grpc")
from grpc_health.v1 import health_pb2  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from tests.e2e.test_grpc import wait_for_health  # noqa: E402

pytestmark = pytest.mark.e2e

TOKEN = "grpc-repository-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CALLS = 12  # calls on fresh channels: enough for both workers to answer some (SO_REUSEPORT spreads connections)
ROW = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """dense: version 1 (3 outputs) and version 2 (2 outputs); other: one version."""
    folder = tmp_path_factory.mktemp("grpc-repository-models")
    mb.dense(folder / "dense" / "1" / "model.keras", seed=1, units=3)
    mb.dense(folder / "dense" / "2" / "model.keras", seed=2, units=2)
    mb.dense(folder / "other" / "1" / "model.keras", seed=3)
    return folder


@pytest.fixture(scope="module")
def address(model_dir: Path):
    port = free_port()
    env = {"WEB_CONCURRENCY": "2", "SERVING_GRPC_PORT": str(port), "SERVING_API_TOKENS": TOKEN,
           "SERVING_CONTROL_TIMEOUT": "90"}
    with running_server(model_dir, env):
        wait_for_health(f"127.0.0.1:{port}", health_pb2.HealthCheckResponse.SERVING)
        yield f"127.0.0.1:{port}"


def client(address: str) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(url=address)


def index(address: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(name, version) -> (state, reason) from RepositoryIndex."""
    with client(address) as triton:
        rows = triton.get_model_repository_index(headers=AUTH, as_json=True).get("models", [])
    return {(row["name"], row.get("version", "")): (row.get("state", ""), row.get("reason", "")) for row in rows}


def answering_versions(address: str, model: str) -> set[str]:
    """The model_version that answered each of CALLS infers, each on its own channel (both workers asked)."""
    versions = set()
    for _ in range(CALLS):
        with client(address) as triton:
            item = grpcclient.InferInput("features", list(ROW.shape), "FP32")
            item.set_data_from_numpy(ROW)
            versions.add(triton.infer(model, [item]).get_response().model_version)
    return versions


def refusal(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value.status(), caught.value.message()


def test_repository_rpcs_need_the_management_token(address):
    with client(address) as triton:
        for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            for call in (partial(triton.get_model_repository_index, headers=headers),
                         partial(triton.load_model, "dense", headers=headers),
                         partial(triton.unload_model, "dense", headers=headers)):
                status, message = refusal(call)
                assert status == "StatusCode.UNAUTHENTICATED", message
    assert answering_versions(address, "dense") == {"2"}  # nothing was unloaded


def ready_names(address: str) -> set[str]:
    """The models RepositoryIndex lists with ready=true (tritonclient's own messages and stub)."""
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        answer = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True), timeout=30,
                                      metadata=tuple(AUTH.items()))
    assert {model.state for model in answer.models} == {"READY"}
    return {model.name for model in answer.models}


def test_index_lists_every_version_ready(address):
    assert index(address) == {("dense", "1"): ("READY", ""), ("dense", "2"): ("READY", ""),
                              ("other", "1"): ("READY", "")}
    assert ready_names(address) == {"dense", "other"}


def test_unload_then_load_in_both_workers(address):
    with client(address) as triton:
        triton.unload_model("other", headers=AUTH)
        states = index(address)
        assert states[("other", "1")][0] == "UNAVAILABLE" and states[("other", "1")][1]
        assert ready_names(address) == {"dense"}
        for _ in range(CALLS):  # no worker still serves it
            assert not triton.is_model_ready("other")
        triton.load_model("other", headers=AUTH)
    assert index(address)[("other", "1")] == ("READY", "")
    assert answering_versions(address, "other") == {"1"}


def test_load_with_config_replaces_serving_json_until_the_next_load(address):
    policy = json.dumps({"version_policy": {"specific": {"versions": [1]}}})
    with client(address) as triton:
        triton.load_model("dense", headers=AUTH, config=policy)
        states = index(address)
        assert states[("dense", "1")] == ("READY", "") and states[("dense", "2")][0] == "UNAVAILABLE"
        assert answering_versions(address, "dense") == {"1"}
        triton.load_model("dense", headers=AUTH)  # back to the folder's serving.json (none: every version)
    assert index(address)[("dense", "2")] == ("READY", "")
    # Default traffic moves to 2 once it is routable in every worker (each re-checks its pending route).
    assert eventually(lambda: answering_versions(address, "dense") == {"2"})


def test_tf_serving_predict_status_and_metadata_by_a_label_a_load_configured(address):
    tf = pytest.importorskip("tensorflow")
    apis = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
    )

    with client(address) as triton:
        triton.load_model("dense", headers=AUTH, config=json.dumps({"labels": {"stable": 1, "canary": 2}}))
    try:
        for _ in range(CALLS):  # fresh channels: both workers answer by the label
            with grpc.insecure_channel(address) as channel:
                for label, version, width in (("stable", 1, 3), ("canary", 2, 2)):
                    request = predict_pb2.PredictRequest()
                    request.model_spec.name, request.model_spec.version_label = "dense", label
                    request.inputs["features"].CopyFrom(tf.make_tensor_proto(ROW))
                    answer = apis.PredictionServiceStub(channel).Predict(request, timeout=30)
                    assert answer.model_spec.version.value == version
                    assert tf.make_ndarray(answer.outputs["probs"]).shape == (1, width)
        with grpc.insecure_channel(address) as channel:
            status = get_model_status_pb2.GetModelStatusRequest()
            status.model_spec.name, status.model_spec.version_label = "dense", "stable"
            states = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=30)
            assert [(s.version, s.state) for s in states.model_version_status] == [(1, 30)]  # AVAILABLE
            meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            meta.model_spec.name, meta.model_spec.version_label = "dense", "canary"
            assert apis.PredictionServiceStub(channel).GetModelMetadata(meta, timeout=30).model_spec.version.value == 2
            request.model_spec.version_label = "nightly"
            with pytest.raises(grpc.RpcError) as caught:
                apis.PredictionServiceStub(channel).Predict(request, timeout=30)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "nightly" in caught.value.details()
    finally:
        with client(address) as triton:
            triton.load_model("dense", headers=AUTH)
    assert eventually(lambda: answering_versions(address, "dense") == {"2"})


def eventually(check, timeout: float = 30) -> bool:
    """Whether `check()` holds within `timeout` s (polled)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize(("model", "config", "status", "word"), [
    ("missing", None, "NOT_FOUND", "missing"),
    ("dense", "{not json", "INVALID_ARGUMENT", "not JSON"),
    ("dense", json.dumps({"version_policy": {"latest": {"num_versions": 0}}}), "INVALID_ARGUMENT", "config"),
    ("dense", json.dumps([1, 2]), "INVALID_ARGUMENT", "serving.json"),
])
def test_bad_loads_are_refused_and_change_nothing(address, model, config, status, word):
    with client(address) as triton:
        got, message = refusal(lambda: triton.load_model(model, headers=AUTH, config=config))
    assert got == f"StatusCode.{status}" and word in message, message
    assert index(address)[("dense", "2")] == ("READY", "")


def test_model_files_in_a_load_are_refused(address):
    with client(address) as triton:
        got, message = refusal(lambda: triton.load_model("dense", headers=AUTH, config="{}",
                                                         files={"file:1/model.keras": b"bytes"}))
    assert got == "StatusCode.INVALID_ARGUMENT" and "model folder" in message


def test_repository_rpcs_are_disabled_without_tokens(model_dir):
    port = free_port()
    with running_server(model_dir, {"WEB_CONCURRENCY": "1", "SERVING_GRPC_PORT": str(port)}):
        wait_for_health(f"127.0.0.1:{port}", health_pb2.HealthCheckResponse.SERVING)
        with client(f"127.0.0.1:{port}") as triton:
            for call in (lambda: triton.get_model_repository_index(headers=AUTH),
                         lambda: triton.load_model("dense", headers=AUTH), lambda: triton.unload_model("dense")):
                status, message = refusal(call)
                assert status == "StatusCode.PERMISSION_DENIED" and "management_disabled" in message
                assert "SERVING_API_TOKENS" in message
            assert triton.is_model_ready("dense")
