"""The Lambda translator: bytecode marshalled by real CPythons 2.7 and 3.6-3.12, read and never run.

The fixtures (tests/fixtures/lambda_bytecode.json) were made by tests/fixtures/make_lambda_bytecode.py
under each of those interpreters. Files are written in the old HDF5 layout (a tf_keras model whose
Lambda's stored function is replaced by the old bytecode) and served outputs are compared with the
same network built directly in Keras 3, with the same weights and the expression written out.
"""
from __future__ import annotations

import base64
import json
import marshal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app.errors import LoadError
from app.serving.legacy.lambda_bytecode import UntranslatableLambda
from app.serving.legacy.lambda_translate import translate_lambda
from app.serving.loader import load_model_file
from app.serving.runtime import CompiledModel
from app.serving.types import BatchingSettings, ModelSource
from tests.model_builders import edit_h5

FIXTURES = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "lambda_bytecode.json").read_text())
VERSIONS = sorted(FIXTURES, key=lambda v: tuple(int(p) for p in v.split(".")))
BATCHING = BatchingSettings(max_batch_size=8, max_batch_delay_ms=0, max_queue_rows=8, request_timeout=1)

RECOGNISED = {
    "lambda x: x / 127.5 - 1.0": "x / 127.5 - 1.0",
    "lambda x: x / 255.0 - 0.5": "x / 255.0 - 0.5",
    "lambda x: -x * 2 + 3 ** 2": "-x * 2 + 9",
    "lambda x: (x - 1.5) ** 2 // 2": "(x - 1.5) ** 2 // 2",
    "lambda x: K.mean(K.square(x), axis=-1, keepdims=True)": "K.mean(K.square(x), axis=-1, keepdims=True)",
    "lambda x: x[:, 1:-1, :, :]": "x[:, 1:-1, :, :]",
    "lambda x: K.concatenate([x, x * 2.0], axis=-1)": "K.concatenate([x, x * 2.0], axis=-1)",
    "lambda x: tf.image.resize(x, (8, 8))": "tf.image.resize(x, size=(8, 8))",
    "lambda x: keras.backend.expand_dims(x, 1)": "K.expand_dims(x, axis=1)",
    "lambda x, scale: x * scale": "x * 0.5",
    "lambda x: tf.reduce_sum(x, 1) + np.pi": "tf.reduce_sum(x, axis=1) + 3.141592653589793",
}
REFUSED = {  # source: what the reason names
    "lambda x: __import__('os').system('touch MARKER') or x": "'__import__'",
    "lambda x: os.system('touch MARKER') or x": "'os'",
    "lambda x: open('MARKER', 'w').write('ran') or x": "'open'",
    "lambda x: [x for _ in range(3)][0]": "",  # a closure (<= 3.11) or the name 'range'
    "lambda x: x if x else 0": "POP_JUMP",
    "lambda x: K.eval(x)": "'K.eval'",
    "lambda x: x.numpy()": "numpy",
    "lambda x: K.mean(x, axis=x)": "not a constant",
}


def stored(version: str, source: str, keras1: bool = False) -> list:
    """The function entry of a Lambda config as Keras stored it: Keras 1 raw_unicode_escape, Keras 2 base64."""
    raw = base64.b64decode(FIXTURES[version][source])
    return [raw.decode("raw_unicode_escape") if keras1 else base64.b64encode(raw).decode("ascii"), None, None]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("source", list(RECOGNISED))
def test_recognised_lambda_of_every_python_reads_as_its_expression(version, source):
    config = {"function": stored(version, source, keras1=version == "2.7"), "function_type": "lambda",
              "arguments": {"scale": 0.5}}
    assert translate_lambda(config).text == RECOGNISED[source]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("source", list(REFUSED))
def test_lambda_off_the_grammar_is_refused_naming_what(version, source):
    with pytest.raises(UntranslatableLambda) as refused:
        translate_lambda({"function": stored(version, source), "function_type": "lambda"})
    assert REFUSED[source] in str(refused.value)
    if "range" in source:
        assert "closure" in str(refused.value) or "'range'" in str(refused.value)


def lambda_file(path: Path, shape: tuple, reference, version: str, source: str, arguments: dict | None = None,
                keras_version: str = "2.1.6") -> Path:
    """A tf_keras file with Lambda(reference) + Flatten + Dense whose Lambda stores `source` as `version` wrote it."""
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    model = tf_keras.Sequential([tf_keras.layers.Lambda(reference, input_shape=shape, name="lambda_1"),
                                 tf_keras.layers.Flatten(), tf_keras.layers.Dense(2, name="dense_1")])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)

    def old_bytecode(config):
        layer = config["config"]["layers"][1]["config"]
        layer.update(function=stored(version, source, keras1=version == "2.7"), function_type="lambda",
                     arguments=arguments or {})
        return config

    return edit_h5(path, old_bytecode, keras_version, "tensorflow")


def keras3_reference(path: Path, shape: tuple, reference) -> object:
    """The same network built directly in Keras 3, its Lambda written out, with the file's weights."""
    import h5py
    import keras

    model = keras.Sequential([keras.Input(shape), keras.layers.Lambda(reference), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    with h5py.File(path, "r") as handle:
        group = handle["model_weights"]["dense_1"]["dense_1"]
        model.layers[-1].set_weights([np.asarray(group["kernel:0"]), np.asarray(group["bias:0"])])
    return model


def written_out():
    """(source, input shape, the expression written out in TensorFlow, arguments); no closures: tf_keras saves them."""
    return [
        ("lambda x: x / 127.5 - 1.0", (4, 4, 3), lambda x: x / 127.5 - 1.0, None),
        ("lambda x: -x * 2 + 3 ** 2", (3,), lambda x: -x * 2 + 3 ** 2, None),
        ("lambda x: (x - 1.5) ** 2 // 2", (3,), lambda x: (x - 1.5) ** 2 // 2, None),
        ("lambda x: K.mean(K.square(x), axis=-1, keepdims=True)", (5, 4),
         lambda x: tf.reduce_mean(tf.square(x), axis=-1, keepdims=True), None),
        ("lambda x: x[:, 1:-1, :, :]", (6, 6, 2), lambda x: x[:, 1:-1, :, :], None),
        ("lambda x: K.concatenate([x, x * 2.0], axis=-1)", (3,), lambda x: tf.concat([x, x * 2.0], axis=-1), None),
        ("lambda x: tf.image.resize(x, (8, 8))", (4, 4, 1), lambda x: tf.image.resize(x, (8, 8)), None),
        ("lambda x: keras.backend.expand_dims(x, 1)", (3,), lambda x: tf.expand_dims(x, 1), None),
        ("lambda x, scale: x * scale", (3,), lambda x: x * 0.5, {"scale": 0.5}),
        ("lambda x: tf.reduce_sum(x, 1) + np.pi", (3, 2), lambda x: tf.reduce_sum(x, 1) + np.pi, None),
    ]


@pytest.mark.parametrize("version", ["2.7", "3.6", "3.10", "3.12"])
def test_translated_file_serves_the_outputs_of_the_network_written_out(tmp_path, version):
    rng = np.random.default_rng(0)
    for index, (source, shape, reference, arguments) in enumerate(written_out()):
        path = lambda_file(tmp_path / f"m{index}.h5", shape, reference, version, source, arguments)
        loaded = load_model_file(ModelSource(name="m", version=1, path=path, batching=BATCHING))
        assert "lambda_bytecode" in loaded.loaded_by
        x = (rng.standard_normal((3, *shape)) * 100).astype("float32")
        served = CompiledModel(loaded)({loaded.signature.input_names[0]: x})[loaded.signature.output_names[0]]
        expected = np.asarray(keras3_reference(path, shape, reference)(x))
        np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-5, err_msg=source)


HOSTILE = ["lambda x: __import__('os').system('touch {marker}') or x",
           "lambda x: open('{marker}', 'w').write('ran') or x",
           "lambda x: __import__('pathlib').Path('{marker}').write_text('ran') or x"]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_lambda_is_refused_and_nothing_in_it_runs(tmp_path, template):
    marker = tmp_path / "marker"
    source = template.format(marker=marker)
    raw = marshal.dumps(compile(source, "model.py", "eval").co_consts[0])  # this Python's bytecode: it could run
    control = tmp_path / "control"
    live = source.replace(str(marker), str(control))
    subprocess.run([sys.executable, "-c", "import marshal, sys, types\n"
                    "code = marshal.loads(sys.stdin.buffer.read())\n"
                    "types.FunctionType(code, {'__builtins__': __builtins__})(0)"],
                   input=marshal.dumps(compile(live, "model.py", "eval").co_consts[0]), check=True, timeout=60)
    assert control.exists()  # the same code, executed, writes its marker: the test can fail
    path = lambda_file(tmp_path / "hostile.h5", (3,), lambda x: x, "3.6", "lambda x: x / 255.0 - 0.5")

    def hostile(config):
        config["config"]["layers"][1]["config"]["function"] = [base64.b64encode(raw).decode("ascii"), None, None]
        return config

    edit_h5(path, hostile, "2.1.6", "tensorflow")
    with pytest.raises(LoadError) as refused:
        load_model_file(ModelSource(name="m", version=1, path=path, batching=BATCHING))
    assert "not on the whitelist" in str(refused.value) and "safe mode" in str(refused.value)
    assert not marker.exists()


def test_translation_off_leaves_the_lambda_to_safe_mode(tmp_path, monkeypatch):
    path = lambda_file(tmp_path / "m.h5", (3,), lambda x: x / 127.5 - 1.0, "3.6", "lambda x: x / 127.5 - 1.0")
    monkeypatch.setenv("SERVING_TRANSLATE_LAMBDA", "false")
    with pytest.raises(LoadError) as refused:
        load_model_file(ModelSource(name="m", version=1, path=path, batching=BATCHING))
    assert "'lambda_1' is a Lambda layer" in str(refused.value) and "safe mode" in str(refused.value)


def test_translated_lambdas_are_reported_by_the_models_endpoint_and_the_check_cli(tmp_path):
    from click.testing import CliRunner

    from app import create_app
    from app.cli import models_cli

    folder = tmp_path / "models"
    lambda_file(folder / "norm.h5", (4, 4, 3), lambda x: x / 127.5 - 1.0, "3.6", "lambda x: x / 127.5 - 1.0")
    application = create_app({"TESTING": True, "MODEL_DIR": folder, "STRICT_READINESS": False})
    try:
        assert application.extensions["registry"].wait_until_settled(120)
        info = application.test_client().get("/models/norm").get_json()
        assert info["versions"][0]["translated_lambdas"] == [{"layer": "lambda_1", "expression": "x / 127.5 - 1.0"}]
    finally:
        application.extensions["registry"].close()
    result = CliRunner().invoke(models_cli, ["check", str(folder / "norm.h5")])
    assert result.exit_code == 0, result.output
    assert "lambda lambda_1: translated as x / 127.5 - 1.0" in result.output


def test_translated_lambda_must_give_the_stored_output_shape(tmp_path):
    path = lambda_file(tmp_path / "m.h5", (3,), lambda x: x, "3.6", "lambda x: x / 255.0 - 0.5")

    def wrong_shape(config):
        config["config"]["layers"][1]["config"].update(output_shape=[7], output_shape_type="raw")
        return config

    edit_h5(path, wrong_shape, "2.1.6", "tensorflow")
    with pytest.raises(LoadError) as refused:  # and tf_keras, the fallback, refuses the Lambda in safe mode
        load_model_file(ModelSource(name="m", version=1, path=path, batching=BATCHING))
    assert "output_shape [7]" in str(refused.value)
