"""Keras 1 `Merge` layers: files in the Keras 1 layouts, outputs equal to the network built directly in Keras 3."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.errors import LoadError
from app.serving.loader import load_model_file
from app.serving.runtime import CompiledModel
from app.serving.types import BatchingSettings, ModelSource
from tests.model_builders import edit_h5

BATCHING = BatchingSettings(max_batch_size=8, max_batch_delay_ms=0, max_queue_rows=8, request_timeout=1)
KERAS3_CLASS = {"concat": "Concatenate", "sum": "Add", "mul": "Multiply", "ave": "Average", "max": "Maximum"}


def two_branch_file(path: Path, mode: str) -> Path:
    """A tf_keras functional model of two same-shaped Dense branches joined by the Keras 2 layer for `mode`."""
    import tf_keras

    tf_keras.utils.set_random_seed(5)
    a, b = tf_keras.Input((4,), name="in_a"), tf_keras.Input((4,), name="in_b")
    joined = getattr(tf_keras.layers, KERAS3_CLASS[mode])(name="merge_1")(
        [tf_keras.layers.Dense(3, name="dense_a")(a), tf_keras.layers.Dense(3, name="dense_b")(b)])
    model = tf_keras.Model([a, b], tf_keras.layers.Dense(2, name="dense_out")(joined))
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def keras1_sequential(mode: str):
    """The Keras 1 layout: a Sequential whose first layer is Merge(layers=[Sequential branch, ...])."""
    def dense(name, units, shape=None):
        config = {"name": name, "output_dim": units, "activation": "linear", "init": "glorot_uniform",
                  "bias": True, "trainable": True}
        if shape:
            config["batch_input_shape"] = [None, *shape]
        return {"class_name": "Dense", "config": config}

    def edit(_config):
        merge = {"name": "merge_1", "mode": mode, "mode_type": "raw", "concat_axis": -1, "dot_axes": -1,
                 "output_shape": None, "output_shape_type": "raw",
                 "layers": [{"class_name": "Sequential", "config": [dense("dense_a", 3, (4,))]},
                            {"class_name": "Sequential", "config": [dense("dense_b", 3, (4,))]}]}
        return {"class_name": "Sequential", "config": [{"class_name": "Merge", "config": merge},
                                                       dense("dense_out", 2)]}
    return edit


def keras1_functional(mode: str):
    """The Keras 1 functional layout: the join is one `Merge` node with two inputs."""
    def edit(config):
        for layer in config["config"]["layers"]:
            if layer["config"]["name"] == "merge_1":
                layer["class_name"] = "Merge"
                layer["config"] = {"name": "merge_1", "mode": mode, "mode_type": "raw", "concat_axis": -1}
        return config
    return edit


def keras3_reference(path: Path, mode: str):
    """The same network built directly in Keras 3, with the file's weights set layer by layer."""
    import h5py
    import keras

    a, b = keras.Input((4,)), keras.Input((4,))
    dense_a, dense_b, dense_out = keras.layers.Dense(3), keras.layers.Dense(3), keras.layers.Dense(2)
    model = keras.Model([a, b], dense_out(getattr(keras.layers, KERAS3_CLASS[mode])()([dense_a(a), dense_b(b)])))
    with h5py.File(path, "r") as handle:
        for layer, name in ((dense_a, "dense_a"), (dense_b, "dense_b"), (dense_out, "dense_out")):
            group = handle["model_weights"][name][name]
            layer.set_weights([np.asarray(group["kernel:0"]), np.asarray(group["bias:0"])])
    return model


@pytest.mark.parametrize("layout", [keras1_sequential, keras1_functional], ids=["sequential", "functional"])
@pytest.mark.parametrize("mode", list(KERAS3_CLASS))
def test_keras1_merge_serves_the_outputs_of_the_keras3_network(tmp_path, mode, layout):
    path = edit_h5(two_branch_file(tmp_path / "m.h5", mode), layout(mode), "1.1.0", None)
    loaded = load_model_file(ModelSource(name="m", version=1, path=path, batching=BATCHING))
    assert "keras1_merge" in loaded.loaded_by
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((3, 4)).astype("float32") for _ in range(2))
    first, second = loaded.signature.input_names
    served = CompiledModel(loaded)({first: a, second: b})[loaded.signature.output_names[0]]
    expected = np.asarray(keras3_reference(path, mode)([a, b]))
    np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-6)
    swapped = np.asarray(keras3_reference(path, mode)([b, a]))
    assert not np.allclose(served, swapped)  # the branches are told apart, not only their shapes


@pytest.mark.parametrize("mode, words", [("dot", "'dot'"), ("cos", "'cos'")])
def test_merge_mode_without_an_exact_keras3_layer_is_refused_naming_it(tmp_path, mode, words):
    path = edit_h5(two_branch_file(tmp_path / "m.h5", "sum"), keras1_sequential(mode), "1.1.0", None)
    with pytest.raises(LoadError) as refused:
        load_model_file(ModelSource(name="m", version=1, path=path, batching=BATCHING))
    assert words in str(refused.value) and "'merge_1'" in str(refused.value)


def test_merge_whose_mode_is_stored_code_is_refused(tmp_path):
    def code_mode(config):
        config = keras1_sequential("sum")(config)
        config["config"][0]["config"].update(mode=["\u00e3\u0001", None, None], mode_type="lambda")
        return config

    path = edit_h5(two_branch_file(tmp_path / "m.h5", "sum"), code_mode, "1.1.0", None)
    with pytest.raises(LoadError) as refused:
        load_model_file(ModelSource(name="m", version=1, path=path, batching=BATCHING))
    assert "stored Python code" in str(refused.value)
