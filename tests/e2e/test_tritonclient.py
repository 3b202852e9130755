"""tritonclient's HTTP client against a real gunicorn: the V2 surface end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.model_builders import reference
from tests.support import running_server

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def triton(model_repo: Path):
    """One gunicorn for the module, and a tritonclient pointed at it."""
    env = {"SERVING_STRICT_READINESS": "false", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4",
           "SERVING_API_TOKENS": "triton-token"}  # the repository index is a management route
    with running_server(model_repo, env) as base:
        client = httpclient.InferenceServerClient(url=base.removeprefix("http://"))
        yield client
        client.close()


def run(client, model: str, arrays: dict[str, np.ndarray], *, binary: bool = True, outputs=None, **kwargs):
    inputs = []
    for name, array in arrays.items():
        item = httpclient.InferInput(name, list(array.shape), np_datatype(array))
        item.set_data_from_numpy(array, binary_data=binary)
        inputs.append(item)
    return client.infer(model, inputs, outputs=outputs, **kwargs)


def np_datatype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(array.dtype)


def test_server_and_model_health(triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("dense")
    assert triton.is_model_ready("versioned", "2")
    assert not triton.is_model_ready("corrupt")
    assert not triton.is_model_ready("nope")
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]


def test_metadata_config_and_index(triton):
    meta = triton.get_model_metadata("two_inputs")
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("a", "FP32", [-1, 4]), ("b", "FP32", [-1, 3])]
    assert triton.get_model_metadata("versioned", "1")["versions"] == ["1", "2"]
    config = triton.get_model_config("tokens")
    assert config["max_batch_size"] > 0 and config["input"][0]["data_type"] == "TYPE_INT32"
    assert config["input"][0]["dims"] == [10] and "dynamic_batching" in config
    listed = triton.get_model_repository_index(headers={"Authorization": "Bearer triton-token"})
    index = {(e["name"], e["version"]): e["state"] for e in listed}
    assert index[("dense", "1")] == "READY" and index[("corrupt", "1")] == "UNAVAILABLE"


@pytest.mark.parametrize("binary", [True, False])
def test_infer_default_binary_and_json(triton, model_repo, binary):
    x = np.random.default_rng(0).random((7, 4), dtype=np.float32)
    outputs = None if binary else [httpclient.InferRequestedOutput("probs", binary_data=False)]
    result = run(triton, "dense", {"features": x}, binary=binary, outputs=outputs, request_id="r1")
    assert result.get_response()["id"] == "r1"
    np.testing.assert_allclose(result.as_numpy("probs"), reference(model_repo / "dense.keras", x), atol=1e-5)


@pytest.mark.parametrize("binary", [True, False])
def test_every_model_kind(triton, model_repo, binary):
    rng = np.random.default_rng(1)
    cases = [
        ("two_inputs", "two_inputs.keras", {"a": rng.random((3, 4), dtype=np.float32),
                                            "b": rng.random((3, 3), dtype=np.float32)}),
        ("two_outputs", "two_outputs.keras", {"x": rng.random((3, 6), dtype=np.float32)}),
        ("cnn", "cnn.keras", {"image": rng.random((2, 28, 28, 1), dtype=np.float32)}),
        ("tokens", "tokens.keras", {"tokens": rng.integers(0, 20, (3, 10)).astype(np.int32)}),
        ("legacy", "legacy.h5", {"dense_input": rng.random((3, 5), dtype=np.float32)}),
    ]
    for model, file, arrays in cases:
        meta = triton.get_model_metadata(model)
        arrays = dict(zip([i["name"] for i in meta["inputs"]], arrays.values()))
        outputs = None if binary else [httpclient.InferRequestedOutput(o["name"], binary_data=False)
                                       for o in meta["outputs"]]
        result = run(triton, model, arrays, binary=binary, outputs=outputs)
        expected = reference(model_repo / file, arrays if len(arrays) > 1 else next(iter(arrays.values())))
        expected = expected if isinstance(expected, dict) else {meta["outputs"][0]["name"]: expected}
        for name, value in expected.items():
            np.testing.assert_allclose(result.as_numpy(name), np.asarray(value), atol=1e-5, err_msg=model)


def test_int64_inputs_are_converted(triton, model_repo):
    ids = np.random.default_rng(2).integers(0, 20, (2, 10))  # int64, as numpy makes them by default
    result = run(triton, "tokens", {"tokens": ids})
    np.testing.assert_allclose(result.as_numpy("sentiment"),
                               reference(model_repo / "tokens.keras", ids.astype(np.int32)), atol=1e-5)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request(triton, model_repo, algorithm):
    x = np.random.default_rng(3).random((4, 4), dtype=np.float32)
    result = run(triton, "dense", {"features": x}, request_compression_algorithm=algorithm)
    np.testing.assert_allclose(result.as_numpy("probs"), reference(model_repo / "dense.keras", x), atol=1e-5)


@pytest.mark.parametrize(("model", "arrays", "status", "word"), [
    ("dense", {"features": np.ones((2, 5), dtype=np.float32)}, "400", "shape"),
    ("nope", {"features": np.ones((2, 4), dtype=np.float32)}, "404", "nope"),
    ("corrupt", {"features": np.ones((2, 4), dtype=np.float32)}, "503", "FAILED"),
    ("dense", {"features": np.array([[b"a", b"b", b"c", b"d"]], dtype=np.object_)}, "400", "BYTES"),
])
def test_errors(triton, model, arrays, status, word):
    with pytest.raises(InferenceServerException) as caught:
        run(triton, model, arrays)
    assert caught.value.status() == status and word in caught.value.message()
