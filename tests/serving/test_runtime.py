"""The runtime: TFLite when it agrees with the TensorFlow function, the function otherwise."""
from __future__ import annotations

import types

import numpy as np
import pytest

from app.errors import LoadError
from app.serving.lifecycle import probe_inputs, warm_up
from app.serving.loader import load_model_file
from app.serving.runtime import CompiledModel, choose_runtime, convert, flat_call
from app.serving.tflite_file import endpoints_by_name
from app.serving.tflite_runtime import LiteModel, bucket, interpreter_calls
from app.serving.types import BatchingSettings, ModelSource
from tests import model_builders as mb

BATCHING = BatchingSettings(max_batch_size=8, max_batch_delay_ms=0, max_queue_rows=8, request_timeout=1)


def compiled_model(path) -> CompiledModel:
    return CompiledModel(load_model_file(ModelSource(name="m", version=1, path=path, batching=BATCHING)))


def probe_for(compiled: CompiledModel):
    return probe_inputs(warm_up(compiled, compiled.signature)[1])


def lite_model(compiled: CompiledModel, reference, probe) -> LiteModel:
    content = convert(compiled.concrete)
    endpoints = endpoints_by_name(content, compiled.signature, compiled.graph_input_names)
    return LiteModel(content, compiled.signature, endpoints, reference=reference, probe=probe)


@pytest.fixture(scope="module")
def dense_compiled(tmp_path_factory):
    return compiled_model(mb.dense(tmp_path_factory.mktemp("rt") / "dense.keras"))


def test_rows_are_padded_to_a_power_of_two():
    assert [bucket(n) for n in (1, 2, 3, 4, 5, 17, 256)] == [1, 2, 4, 4, 8, 32, 256]


def test_auto_serves_a_dense_model_from_tflite_with_keras_answers_at_every_size(dense_compiled):
    forward, reason = choose_runtime(dense_compiled, probe_for(dense_compiled), "auto", threads=1)
    assert forward.kind == "tflite" and reason is None
    rng = np.random.default_rng(0)
    for rows in (1, 3, 5, 17):
        x = rng.normal(size=(rows, 4)).astype(np.float32)
        np.testing.assert_allclose(forward({"features": x})["probs"], dense_compiled({"features": x})["probs"],
                                   rtol=1e-5, atol=1e-6)
    assert forward.sizes == [1, 4, 8, 32]


def test_padding_rows_never_reach_the_answer(dense_compiled):
    forward, _ = choose_runtime(dense_compiled, probe_for(dense_compiled), "auto", threads=1)
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    together = forward({"features": x})["probs"]
    assert together.shape == (3, 3)
    for i in range(3):
        np.testing.assert_allclose(together[i], forward({"features": x[i:i + 1]})["probs"][0], rtol=1e-6)


def test_tf_preference_keeps_the_tensorflow_function(dense_compiled):
    forward, reason = choose_runtime(dense_compiled, probe_for(dense_compiled), "tf", threads=1)
    assert forward is dense_compiled and "asks for tf" in reason


def test_a_model_tflite_cannot_convert_falls_back_with_the_reason(tmp_path):
    compiled = compiled_model(mb.tokens_lstm(tmp_path / "tokens.keras"))
    forward, reason = choose_runtime(compiled, probe_for(compiled), "auto", threads=1)
    assert forward is compiled
    assert reason.startswith("conversion failed: ") and "\n" not in reason


def test_tflite_preference_fails_the_load_when_tflite_is_unavailable(tmp_path):
    compiled = compiled_model(mb.tokens_lstm(tmp_path / "tokens.keras"))
    with pytest.raises(LoadError, match="runtime tflite is required"):
        choose_runtime(compiled, probe_for(compiled), "tflite", threads=1)


def test_a_size_whose_answers_disagree_is_served_by_the_function(dense_compiled):
    def reference(inputs):  # stands in for a TensorFlow function that TFLite disagrees with at 8 rows
        out = dense_compiled(inputs)
        return {k: v + 1.0 for k, v in out.items()} if len(inputs["features"]) > 4 else out

    lite = lite_model(dense_compiled, reference, probe_for(dense_compiled))
    x = np.ones((6, 4), np.float32)
    np.testing.assert_allclose(lite({"features": x})["probs"], reference({"features": x})["probs"])
    assert 8 not in lite.sizes and lite.sizes == [1, 4]



@pytest.mark.parametrize("builder", [mb.two_inputs, mb.two_outputs, mb.cnn])
def test_multi_input_multi_output_and_conv_models_answer_alike_under_both_runtimes(tmp_path, builder):
    compiled = compiled_model(builder(tmp_path / "m.keras"))
    forward, reason = choose_runtime(compiled, probe_for(compiled), "auto", threads=1)
    assert forward.kind == "tflite", reason
    rng = np.random.default_rng(2)
    for rows in (1, 6):
        inputs = {spec.name: rng.normal(size=(rows, *spec.shape[1:])).astype(spec.dtype)
                  for spec in compiled.signature.inputs}
        got, want = forward(inputs), compiled(inputs)
        assert list(got) == list(want) == list(compiled.signature.output_names)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)


def test_auto_keeps_the_function_for_a_model_too_big_for_one_tflite_copy_per_size(dense_compiled, monkeypatch):
    from app.serving import runtime

    monkeypatch.setattr(runtime, "TFLITE_MAX_BYTES", 100)
    forward, reason = choose_runtime(dense_compiled, probe_for(dense_compiled), "auto", threads=1)
    assert dense_compiled.weight_bytes == (4 * 8 + 8 + 8 * 3 + 3) * 4
    assert forward is dense_compiled and "MiB" in reason and "copy of the weights" in reason
    forced, _ = choose_runtime(dense_compiled, probe_for(dense_compiled), "tflite", threads=1)
    assert forced.kind == "tflite"


def test_tensorflow_still_has_the_private_flat_call_the_function_runtime_uses(dense_compiled):
    assert flat_call(dense_compiled.concrete) is not None, (
        "ConcreteFunction._call_flat is gone: CompiledModel now takes the public call (about 5x the cost "
        "of a call); find its replacement in runtime.flat_call")


def test_without_the_flat_call_the_public_call_answers_alike(tmp_path, monkeypatch):
    from app.serving import runtime

    monkeypatch.setattr(runtime, "flat_call", lambda concrete: None)
    public = compiled_model(mb.dense(tmp_path / "dense.keras"))
    monkeypatch.undo()
    fast = compiled_model(tmp_path / "dense.keras")
    x = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(public({"features": x})["probs"], fast({"features": x})["probs"], rtol=1e-6)


def test_litert_still_has_the_private_interpreter_wrapper_the_tflite_runtime_calls(dense_compiled):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=convert(dense_compiled.concrete))
    public = (interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor)
    assert interpreter_calls(interpreter) != public, (
        "ai_edge_litert's Interpreter._interpreter (SetTensor/Invoke/GetTensor) is gone: every TFLite call now "
        "takes the public methods; find their replacement in tflite_runtime.interpreter_calls")


def test_without_the_interpreter_wrapper_the_public_methods_answer_alike(dense_compiled, monkeypatch):
    from app.serving import tflite_runtime

    probe = probe_for(dense_compiled)
    fast = lite_model(dense_compiled, dense_compiled, probe)
    assert interpreter_calls(types.SimpleNamespace(set_tensor=1, invoke=2, get_tensor=3)) == (1, 2, 3)
    monkeypatch.setattr(tflite_runtime, "interpreter_calls", lambda i: (i.set_tensor, i.invoke, i.get_tensor))
    public = lite_model(dense_compiled, dense_compiled, probe)
    x = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(public({"features": x})["probs"], fast({"features": x})["probs"])


def test_a_tflite_file_without_a_signature_def_is_named_by_its_tensors(dense_compiled, tmp_path):
    from app.serving.tflite_file import read_tflite

    path = tmp_path / "plain.tflite"
    path.write_bytes(convert(dense_compiled.concrete))  # from a concrete function: no SignatureDef
    read = read_tflite(path)
    assert read.signature_key is None
    assert [(s.name, s.dtype, s.shape) for s in read.signature.inputs] == [("features", "float32", (None, 4))]
    lite = LiteModel(read.content, read.signature, read.endpoints)
    x = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    (output,) = read.signature.output_names
    np.testing.assert_allclose(lite({"features": x})[output], dense_compiled({"features": x})["probs"],
                               rtol=1e-5, atol=1e-6)


def test_a_file_that_is_not_tflite_fails_with_a_one_line_reason(tmp_path):
    from app.serving.lifecycle import prepare

    path = tmp_path / "broken.tflite"
    path.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(LoadError, match="cannot read broken.tflite as a TFLite model") as caught:
        prepare(ModelSource(name="m", version=1, path=path, batching=BATCHING), (1, 1))
    assert "\n" not in str(caught.value)


def test_the_tf_runtime_setting_cannot_serve_a_tflite_file(dense_compiled, tmp_path):
    from app.serving.lifecycle import prepare

    path = tmp_path / "m.tflite"
    path.write_bytes(convert(dense_compiled.concrete))
    with pytest.raises(LoadError, match="runs on LiteRT only"):
        prepare(ModelSource(name="m", version=1, path=path, batching=BATCHING, runtime="tf"), (1, 1))
    assert prepare(ModelSource(name="m", version=1, path=path, batching=BATCHING), (1, 1)).forward.kind == "tflite"
