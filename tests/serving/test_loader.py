"""The loader: format sniffing, one-line reasons, custom objects, Lambda layers, tf_keras signatures."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from app.errors import LoadError
from app.serving.loader import load_model_file, sniff_format
from app.serving.runtime import CompiledModel
from app.serving.types import BatchingSettings, ModelSource
from tests import model_builders as mb

BATCHING = BatchingSettings(max_batch_size=8, max_batch_delay_ms=0, max_queue_rows=8, request_timeout=1)


def source(path, **kwargs) -> ModelSource:
    return ModelSource(name="m", version=1, path=path, batching=BATCHING, **kwargs)


def reason(path, **kwargs) -> str:
    with pytest.raises(LoadError) as info:
        load_model_file(source(path, **kwargs))
    text = str(info.value)
    assert "\n" not in text
    return text


def test_sniffs_formats_by_content(tmp_path):
    assert sniff_format(mb.dense(tmp_path / "a.keras")) == "keras_zip"
    assert sniff_format(mb.tf_keras_h5(tmp_path / "b.h5")) == "hdf5"
    assert sniff_format(mb.pickle_h5(tmp_path / "c.h5")) == "pickle"
    assert sniff_format(mb.corrupt(tmp_path / "d.h5")) == "unknown"
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    assert sniff_format(tmp_path / "sm") == "savedmodel"


def test_weights_only_says_the_architecture_is_missing(tmp_path):
    text = reason(mb.weights_only_h5(tmp_path / "w.h5"))
    assert "weights only" in text and "no model config" in text


def test_pickle_is_not_a_keras_file(tmp_path):
    assert "a Python pickle, not a Keras file" in reason(mb.pickle_h5(tmp_path / "p.h5"))


def test_truncated_hdf5(tmp_path):
    assert "truncated" in reason(mb.truncated_h5(tmp_path / "t.h5"))


def test_other_bytes_are_not_a_keras_file(tmp_path):
    assert "not a Keras file" in reason(mb.corrupt(tmp_path / "x.h5"))


def test_savedmodel_folder_is_named(tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    assert "SavedModel" in reason(tmp_path / "sm")


def test_hdf5_under_a_keras_name_loads(tmp_path):
    path = mb.tf_keras_h5(tmp_path / "m.h5")
    renamed = tmp_path / "m.keras"
    shutil.copy(path, renamed)
    loaded = load_model_file(source(renamed))
    assert loaded.file_format == "hdf5"
    assert loaded.keras_version and loaded.keras_version.startswith("2.")


def test_keras3_file_records_how_it_was_loaded(tmp_path):
    loaded = load_model_file(source(mb.dense(tmp_path / "d.keras")))
    assert (loaded.loaded_by, loaded.file_format) == ("keras3", "keras_zip")
    assert loaded.keras_version.startswith("3.")
    assert loaded.signature.input_names == ("features",)


def test_unknown_layer_class_is_named(tmp_path):
    text = reason(mb.custom_layer_keras(tmp_path / "c.keras"))
    assert "unknown layer class 'Scale'" in text and "custom_objects.py" in text


def test_custom_objects_module_is_used_when_present(tmp_path):
    path = mb.custom_layer_keras(tmp_path / "c.keras")
    code = tmp_path / "c.custom_objects.py"
    code.write_text(mb.CUSTOM_LAYER_CODE)
    loaded = load_model_file(source(path, custom_objects_path=code, allow_custom_code=True))
    out = CompiledModel(loaded)({"x": np.ones((2, 3), "float32")})
    np.testing.assert_allclose(out[loaded.signature.output_names[0]], 3.0)


def test_custom_objects_module_without_the_dict_is_a_reason(tmp_path):
    code = tmp_path / "custom_objects.py"
    code.write_text("X = 1\n")
    text = reason(mb.custom_layer_keras(tmp_path / "c.keras"), custom_objects_path=code, allow_custom_code=True)
    assert "CUSTOM_OBJECTS" in text


def test_lambda_refused_in_safe_mode_with_the_setting_named(tmp_path):
    text = reason(mb.lambda_h5(tmp_path / "l.h5"))
    assert "'double'" in text and "Lambda" in text and '"safe_mode": false' in text


def test_lambda_served_when_safe_mode_is_off(tmp_path):
    loaded = load_model_file(source(mb.lambda_h5(tmp_path / "l.h5"), safe_mode=False))
    assert CompiledModel(loaded)({loaded.signature.input_names[0]: np.ones((1, 3), "float32")})


def test_lambda_bytecode_from_another_python(tmp_path):
    def foreign_bytecode(config):
        layer = config["config"]["layers"][1]["config"]
        layer["function"] = ["\u00e3\u0001\u0000\u0000\u0000S\u0000", None, None]  # Python 3.5-era marshal
        return config

    path = mb.edit_h5(mb.lambda_h5(tmp_path / "l.h5"), foreign_bytecode, "1.2.0", None)
    text = reason(path, safe_mode=False)
    assert "another Python version" in text and "'double'" in text


def test_keras1_merge_is_named(tmp_path):
    def merge(config):
        config["config"]["layers"][1]["class_name"] = "Merge"
        return config

    path = mb.edit_h5(mb.tf_keras_h5(tmp_path / "m.h5"), merge, "1.1.0", None)
    assert "'Merge'" in reason(path)


def test_tf_keras_fallback_has_a_signature(tmp_path):
    def time_major(config):
        config["config"]["layers"][1]["config"]["time_major"] = True
        return config

    path, inputs, expected = mb.legacy_h5(tmp_path / "m.h5", lambda k: k.Sequential(
        [k.Input((4, 3), name="seq"), k.layers.LSTM(2, name="out")]), time_major)
    try:
        loaded = load_model_file(source(path))
    except LoadError:
        pytest.skip("tf_keras 2.21 refuses time_major=True as well")
    assert loaded.loaded_by == "tf_keras"
    assert loaded.signature.inputs[0].shape == (None, 4, 3)


def test_tf_keras_model_runs_in_the_compiled_forward_pass(tmp_path):
    import tf_keras

    from app.serving.legacy import build
    from app.serving.loader import describe_signature

    path = mb.tf_keras_h5(tmp_path / "m.h5")
    model = build.tf_keras_from_hdf5(path, {}, True)
    signature = describe_signature(model)
    assert signature.inputs[0].shape == (None, 5) and len(signature.outputs) == 1
    loaded = load_model_file(source(path))
    x = np.random.default_rng(0).standard_normal((4, 5)).astype("float32")
    compiled_tf = CompiledModel(type(loaded)(model, signature, "hdf5", "tf_keras"))
    ours = CompiledModel(loaded)({loaded.signature.input_names[0]: x})
    theirs = compiled_tf({signature.input_names[0]: x})
    np.testing.assert_allclose(list(ours.values())[0], list(theirs.values())[0], atol=1e-5)
    np.testing.assert_allclose(list(theirs.values())[0], tf_keras.models.load_model(path, compile=False)(x), atol=1e-6)


def test_serving_json_safe_mode_reaches_the_loader(tmp_path):
    from app.serving.source import scan_source
    from app.settings import load_settings

    mb.lambda_h5(tmp_path / "lam.h5")
    (tmp_path / "lam.serving.json").write_text(json.dumps({"safe_mode": False}))
    (found,) = scan_source(tmp_path, load_settings(environ={}))
    assert load_model_file(found).loaded_by


def test_a_keras3_weights_file_says_it_holds_weights_only(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)  # Keras 3's layout: layers/... and vars/, no layer_names attribute
    text = reason(path)
    assert "m.weights.h5 holds weights only (saved by save_weights)" in text and "architecture is missing" in text


def test_keras3_tensors_still_carry_the_private_keras_history(tmp_path):
    """Input names come from `_keras_history` (the InputLayer); without it the tensor's own name is used."""
    model = load_model_file(source(mb.two_inputs(tmp_path / "two.keras"))).model
    assert all(getattr(t, "_keras_history", None) is not None for t in model.inputs), (
        "Keras dropped KerasTensor._keras_history: loader._tensor_name now names inputs by tensor.name; "
        "check the names GET /models reports and update _tensor_name")
