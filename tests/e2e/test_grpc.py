"""gRPC end to end: tritonclient.grpc (V2), tensorflow_serving.apis stubs, health and reflection, on real gunicorn."""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.model_builders import dense, reference
from tests.support import children, free_port, running_server

grpcclient = pytest.importorskip("tritonclient.grpc")
grpc = pytest.importorskip("grpc")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException, np_to_triton_dtype  # noqa: E402

pytestmark = pytest.mark.e2e

MAX_CONTENT_LENGTH = 16 * 1024 * 1024  # beyond gRPC's 4 MB default on purpose
CNN_ROWS_OVER_4MB = 2000  # 2000 x 28 x 28 x 4 bytes = 6.3 MB


@pytest.fixture(scope="module")
def served(model_repo: Path):
    """One gunicorn (one worker) with gRPC on its own port; yields (gRPC address, HTTP base)."""
    port = free_port()
    env = {"SERVING_STRICT_READINESS": "false", "WEB_CONCURRENCY": "1", "SERVING_GRPC_PORT": str(port),
           "SERVING_MAX_CONTENT_LENGTH": str(MAX_CONTENT_LENGTH)}
    with running_server(model_repo, env) as base:
        address = f"127.0.0.1:{port}"
        wait_for_health(address, health_pb2.HealthCheckResponse.SERVING)
        yield address, base


@pytest.fixture(scope="module")
def triton(served):
    client = grpcclient.InferenceServerClient(url=served[0])
    yield client
    client.close()


def health_status(address: str, service: str = "") -> int | None:
    """The health service's answer, or None when nothing answers on the port."""
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                           timeout=2).status
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                              grpc.StatusCode.CANCELLED):  # CANCELLED: the call met the server's stop
                return None
            raise


def wait_for_health(address: str, wanted: int, timeout: float = 60) -> list[int | None]:
    """Poll the health service until it answers `wanted`; return every answer seen (AssertionError on time-out)."""
    seen: list[int | None] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(health_status(address))
        if seen[-1] == wanted:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"health never answered {wanted}: {seen[-5:]}")


def raw_inputs(arrays: dict[str, np.ndarray]) -> list:
    inputs = []
    for name, array in arrays.items():
        item = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        inputs.append(item)
    return inputs


CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents", "INT64": "int64_contents"}


def typed_inputs(arrays: dict[str, np.ndarray]) -> list:
    """Inputs carried in the typed `contents` fields instead of raw_input_contents."""
    inputs = []
    for name, array in arrays.items():
        datatype = np_to_triton_dtype(array.dtype)
        item = grpcclient.InferInput(name, list(array.shape), datatype)
        getattr(item._get_tensor().contents, CONTENTS[datatype]).extend(array.ravel().tolist())
        inputs.append(item)
    return inputs


def typed_output(result, name: str) -> np.ndarray:
    """An output answered in typed `contents` (tritonclient's as_numpy reads raw contents only)."""
    response = result.get_response()
    assert not response.raw_output_contents
    tensor = next(o for o in response.outputs if o.name == name)
    return np.asarray(tensor.contents.fp32_contents, dtype=np.float32).reshape(tuple(tensor.shape))


def test_health_metadata_and_readiness(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("dense") and triton.is_model_ready("versioned", "2")
    assert not triton.is_model_ready("corrupt")
    with pytest.raises(InferenceServerException) as caught:
        triton.is_model_ready("nope")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert triton.get_server_metadata().name == "keras-model-server"
    meta = triton.get_model_metadata("two_inputs")
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [("a", "FP32", [-1, 4]),
                                                                          ("b", "FP32", [-1, 3])]
    assert list(triton.get_model_metadata("versioned", "1").versions) == ["1", "2"]


def test_infer_raw_echoes_the_request_id_and_matches_keras(triton, model_repo):
    x = np.random.default_rng(0).random((7, 4), dtype=np.float32)
    result = triton.infer("dense", raw_inputs({"features": x}), request_id="r-17")
    assert result.get_response().id == "r-17" and result.get_response().model_version == "1"
    np.testing.assert_allclose(result.as_numpy("probs"), reference(model_repo / "dense.keras", x), atol=1e-5)


def model_cases(rng: np.random.Generator) -> list[tuple[str, str, dict[str, np.ndarray]]]:
    return [("two_inputs", "two_inputs.keras", {"a": rng.random((3, 4), dtype=np.float32),
                                                "b": rng.random((3, 3), dtype=np.float32)}),
            ("two_outputs", "two_outputs.keras", {"x": rng.random((3, 6), dtype=np.float32)}),
            ("cnn", "cnn.keras", {"image": rng.random((2, 28, 28, 1), dtype=np.float32)}),
            ("tokens", "tokens.keras", {"tokens": rng.integers(0, 20, (3, 10)).astype(np.int32)})]


@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
def test_every_model_kind_matches_keras(triton, model_repo, typed):
    for model, file, arrays in model_cases(np.random.default_rng(1)):
        meta = triton.get_model_metadata(model)
        names = [o.name for o in meta.outputs]
        outputs = [grpcclient.InferRequestedOutput(n) for n in names]
        if typed:
            for output in outputs:  # binary_data false asks for typed contents, as on REST
                output._output.parameters["binary_data"].bool_param = False
        result = triton.infer(model, typed_inputs(arrays) if typed else raw_inputs(arrays), outputs=outputs)
        expected = reference(model_repo / file, arrays if len(arrays) > 1 else next(iter(arrays.values())))
        expected = expected if isinstance(expected, dict) else {names[0]: expected}
        for name, value in expected.items():
            got = typed_output(result, name) if typed else result.as_numpy(name)
            np.testing.assert_allclose(got, np.asarray(value), atol=1e-5, err_msg=f"{model} {name}")


NUMERIC = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64")
CONTENTS.update({"INT8": "int_contents", "INT16": "int_contents", "UINT8": "uint_contents",
                 "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents"})


@pytest.mark.parametrize("datatype", NUMERIC)
def test_every_numeric_datatype_decodes_raw_and_typed(triton, model_repo, datatype):
    """Small integers in every datatype reach the float32 model as the same numbers (FP16 travels raw only)."""
    from tritonclient.utils import triton_to_np_dtype

    values = np.arange(8).reshape(2, 4).astype(triton_to_np_dtype(datatype))
    expected = reference(model_repo / "dense.keras", values.astype(np.float32))
    np.testing.assert_allclose(triton.infer("dense", raw_inputs({"features": values})).as_numpy("probs"),
                               expected, atol=1e-5)
    if datatype != "FP16":
        result = triton.infer("dense", typed_inputs({"features": values}))
        np.testing.assert_allclose(result.as_numpy("probs"), expected, atol=1e-5)


def test_int64_inputs_are_converted_for_an_int32_model(triton, model_repo):
    ids = np.random.default_rng(2).integers(0, 20, (2, 10))
    result = triton.infer("tokens", raw_inputs({"tokens": ids}))
    np.testing.assert_allclose(result.as_numpy("sentiment"),
                               reference(model_repo / "tokens.keras", ids.astype(np.int32)), atol=1e-5)


def test_a_message_over_grpcs_4mb_default_is_served(triton, model_repo):
    images = np.random.default_rng(3).random((CNN_ROWS_OVER_4MB, 28, 28, 1), dtype=np.float32)
    result = triton.infer("cnn", raw_inputs({"image": images}))
    np.testing.assert_allclose(result.as_numpy("digits"), reference(model_repo / "cnn.keras", images), atol=1e-5)


@pytest.mark.parametrize(("model", "arrays", "status", "word"), [
    ("dense", {"features": np.ones((2, 5), dtype=np.float32)}, "INVALID_ARGUMENT", "shape"),
    ("nope", {"features": np.ones((2, 4), dtype=np.float32)}, "NOT_FOUND", "nope"),
    ("corrupt", {"features": np.ones((2, 4), dtype=np.float32)}, "UNAVAILABLE", "FAILED"),
    ("dense", {"features": np.full((1, 4), np.nan, dtype=np.float32)}, "INVALID_ARGUMENT", "NaN"),
    ("dense", {"features": np.ones((MAX_CONTENT_LENGTH // 16 + 1, 4), dtype=np.float32)}, "RESOURCE_EXHAUSTED",
     "larger than max"),
])
def test_errors_map_to_grpc_status_codes(triton, model, arrays, status, word):
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(model, raw_inputs(arrays))
    assert caught.value.status() == f"StatusCode.{status}" and word in caught.value.message()


def test_a_full_queue_answers_resource_exhausted(triton):
    """Concurrent 2000-row requests: past max_queue_rows (2048) while one runs, the others are refused."""
    images = np.zeros((CNN_ROWS_OVER_4MB, 28, 28, 1), dtype=np.float32)

    def call(_: int) -> str:
        try:
            triton.infer("cnn", raw_inputs({"image": images}))
            return "OK"
        except InferenceServerException as exc:
            return exc.status() + " " + exc.message()

    for _ in range(5):  # each round overlaps four requests; one round is nearly always enough
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(call, range(4)))
        assert all(a == "OK" or a.startswith("StatusCode.RESOURCE_EXHAUSTED") for a in answers), answers
        if any(a != "OK" for a in answers):
            break
    assert any("limit 2048" in a for a in answers if a != "OK"), answers  # our message, not gRPC's


def test_tf_serving_stubs_predict_metadata_and_status(served, model_repo):
    tf = pytest.importorskip("tensorflow")
    apis = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
    )

    x = np.random.default_rng(4).random((3, 4), dtype=np.float32)
    with grpc.insecure_channel(served[0]) as channel:
        stub = apis.PredictionServiceStub(channel)
        for version, seed_file in ((1, "versioned/1/model.keras"), (2, "versioned/2/model.keras")):
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.version.value = "versioned", version
            request.inputs["features"].CopyFrom(tf.make_tensor_proto(x))
            response = stub.Predict(request, timeout=30)
            assert response.model_spec.version.value == version
            np.testing.assert_allclose(tf.make_ndarray(response.outputs["probs"]),
                                       reference(model_repo / seed_file, x), atol=1e-5)
        typed = predict_pb2.PredictRequest()  # typed float_val instead of tensor_content
        typed.model_spec.name = "dense"
        typed.inputs["features"].dtype = tf.float32.as_datatype_enum
        typed.inputs["features"].tensor_shape.dim.add(size=3)
        typed.inputs["features"].tensor_shape.dim.add(size=4)
        typed.inputs["features"].float_val.extend(x.ravel().tolist())
        np.testing.assert_allclose(tf.make_ndarray(stub.Predict(typed, timeout=30).outputs["probs"]),
                                   reference(model_repo / "dense.keras", x), atol=1e-5)
        for dtype in (np.float16, np.float64, np.int8, np.uint8, np.int32, np.int64):  # typed fields, then content
            small = np.arange(8).reshape(2, 4).astype(dtype)
            for proto in (tf.make_tensor_proto(small), _typed_proto(tf, small)):
                cast = predict_pb2.PredictRequest()
                cast.model_spec.name = "dense"
                cast.inputs["features"].CopyFrom(proto)
                np.testing.assert_allclose(tf.make_ndarray(stub.Predict(cast, timeout=30).outputs["probs"]),
                                           reference(model_repo / "dense.keras", small.astype(np.float32)),
                                           atol=1e-5, err_msg=str(dtype))
        request.model_spec.version_label = "stable"  # "versioned" has no serving.json labels
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "stable" in caught.value.details()

        meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        meta_request.model_spec.name = "two_inputs"
        meta = stub.GetModelMetadata(meta_request, timeout=30)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        meta.metadata["signature_def"].Unpack(signatures)
        inputs = signatures.signature_def["serving_default"].inputs
        assert sorted(inputs) == ["a", "b"] and inputs["a"].dtype == tf.float32.as_datatype_enum
        assert [d.size for d in inputs["b"].tensor_shape.dim] == [-1, 3]

        status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "versioned"
        states = status_stub.GetModelStatus(status_request, timeout=30).model_version_status
        assert [(s.version, s.state) for s in states] == [(1, 30), (2, 30)]  # AVAILABLE
        status_request.model_spec.name = "corrupt"
        failed = status_stub.GetModelStatus(status_request, timeout=30).model_version_status[0]
        assert failed.state == 50 and failed.status.error_code == 2 and failed.status.error_message  # END, UNKNOWN


def _typed_proto(tf, array: np.ndarray):
    """A TensorProto of `array` in its typed value field (half_val holds float16 bit patterns)."""
    proto = tf.make_tensor_proto(array)
    proto.tensor_content = b""
    if array.dtype == np.float16:
        proto.half_val.extend(array.view(np.uint16).ravel().tolist())
    else:
        field = {"f": "double_val", "i": "int64_val" if array.dtype == np.int64 else "int_val", "u": "int_val"}
        getattr(proto, field[array.dtype.kind]).extend(array.ravel().tolist())
    return proto


def test_reflection_lists_the_services(served):
    with grpc.insecure_channel(served[0]) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                timeout=10))
    names = {service.name for service in answer.list_services_response.service}
    assert {"inference.GRPCInferenceService", "tensorflow.serving.PredictionService",
            "tensorflow.serving.ModelService", "grpc.health.v1.Health"} <= names


def test_health_follows_start_up_and_graceful_stop(tmp_path):
    """A one-model server: no SERVING before its models load, SERVING once loaded, not SERVING after SIGTERM."""
    dense(tmp_path / "models" / "dense.keras")
    port = free_port()
    address = f"127.0.0.1:{port}"
    with running_server(tmp_path / "models", {"WEB_CONCURRENCY": "1", "SERVING_GRPC_PORT": str(port)},
                        wait_ready=False) as base:
        seen = wait_for_health(address, health_pb2.HealthCheckResponse.SERVING)
        assert seen[0] in (None, health_pb2.HealthCheckResponse.NOT_SERVING)  # TensorFlow takes seconds to load
        client = grpcclient.InferenceServerClient(url=address)
        assert client.infer("dense", raw_inputs({"features": np.ones((1, 4), np.float32)})).as_numpy("probs").shape \
            == (1, 3)
        client.close()
        os.kill(base.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while health_status(address) == health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "still SERVING a minute after SIGTERM"
            time.sleep(0.2)


def test_a_call_without_the_token_is_unauthenticated_where_tokens_are_required(tmp_path):
    dense(tmp_path / "models" / "dense.keras")
    port = free_port()
    env = {"WEB_CONCURRENCY": "1", "SERVING_GRPC_PORT": str(port), "SERVING_REQUIRE_TOKEN": "true",
           "SERVING_API_TOKENS": "grpc-token"}
    with running_server(tmp_path / "models", env):
        address = f"127.0.0.1:{port}"
        wait_for_health(address, health_pb2.HealthCheckResponse.SERVING)
        client = grpcclient.InferenceServerClient(url=address)
        x = np.ones((1, 4), dtype=np.float32)
        for headers in (None, {"authorization": "Bearer wrong"}):
            with pytest.raises(InferenceServerException) as caught:
                client.infer("dense", raw_inputs({"features": x}), headers=headers)
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED", headers
        assert client.is_server_live() and client.is_model_ready("dense")  # health RPCs never need a token
        result = client.infer("dense", raw_inputs({"features": x}), headers={"authorization": "Bearer grpc-token"})
        assert result.as_numpy("probs").shape == (1, 3)
        client.close()


def listeners(port: int) -> int:
    """Sockets listening on `port` (one per worker that serves gRPC, with SO_REUSEPORT)."""
    return sum(1 for table in ("/proc/net/tcp", "/proc/net/tcp6") for line in Path(table).read_text().splitlines()[1:]
               if int(line.split()[1].rsplit(":", 1)[1], 16) == port and line.split()[3] == "0A")


def server_connections(master: int, port: int) -> dict[int, set[int]]:
    """Each worker's established connections on the gRPC port, as the clients' port numbers."""
    by_inode = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                by_inode[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
    found: dict[int, set[int]] = {}
    for pid in children(master):
        found[pid] = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in by_inode:
                found[pid].add(by_inode[target[8:-1]])
    return found


def test_two_workers_share_the_port_and_old_connections_are_replaced(tmp_path):
    """SO_REUSEPORT spreads 32 connections over both workers; past SERVING_GRPC_MAX_CONNECTION_AGE a busy
    channel moves to a new connection without a failed call."""
    dense(tmp_path / "models" / "dense.keras")
    port = free_port()
    env = {"WEB_CONCURRENCY": "2", "SERVING_GRPC_PORT": str(port), "SERVING_GRPC_MAX_CONNECTION_AGE": "1"}
    with running_server(tmp_path / "models", env) as base:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while listeners(port) < 2:  # each worker listens once its models have settled
            assert time.monotonic() < deadline, f"{listeners(port)} gRPC listener(s) after 120 s"
            time.sleep(0.2)
        options = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
        channels = [grpc.insecure_channel(address, options=options) for _ in range(32)]
        for channel in channels:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        deadline = time.monotonic() + 10
        while True:  # until every connection has been accepted by a worker (or 10 s)
            spread = {pid: len(ports) for pid, ports in server_connections(base.pid, port).items()}
            if sum(spread.values()) >= 32 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for channel in channels:
            channel.close()
        assert len(spread) == 2 and all(spread.values()), spread  # all 32 on one worker: 2 ** -31

        client = grpcclient.InferenceServerClient(url=address)
        x = np.ones((1, 4), dtype=np.float32)
        client.infer("dense", raw_inputs({"features": x}))
        first = set().union(*server_connections(base.pid, port).values())
        seen, calls = set(first), 0
        deadline = time.monotonic() + 20
        while seen <= first and time.monotonic() < deadline:
            client.infer("dense", raw_inputs({"features": x}))  # raises if a call fails
            calls += 1
            seen |= set().union(*server_connections(base.pid, port).values())
            time.sleep(0.05)
        client.close()
        assert seen - first, f"no new connection after {calls} calls over 20 s with a 1 s connection age"
