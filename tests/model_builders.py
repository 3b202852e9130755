"""Build small real Keras models for the tests (each returns the saved file)."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def dense(path: Path, seed: int = 1, units: int = 3) -> Path:
    """4 float inputs -> `units` softmax outputs; input `features`, output `probs`."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(units, activation="softmax", name="probs")(hidden)
    return _save(keras.Model(inputs, outputs), path)


def two_inputs(path: Path) -> Path:
    """Inputs `a` (4 floats) and `b` (3 floats); output `sum` (2 floats)."""
    keras.utils.set_random_seed(2)
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    merged = keras.layers.Concatenate()([keras.layers.Dense(5, name="da")(a), keras.layers.Dense(5, name="db")(b)])
    return _save(keras.Model({"a": a, "b": b}, keras.layers.Dense(2, name="sum")(merged)), path)


def two_outputs(path: Path) -> Path:
    """Input `x` (6 floats); dict outputs `score` (1) and `label` (3)."""
    keras.utils.set_random_seed(3)
    x = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(8, activation="tanh")(x)
    outputs = {"score": keras.layers.Dense(1, name="score_head")(hidden),
               "label": keras.layers.Dense(3, activation="softmax", name="label_head")(hidden)}
    return _save(keras.Model(x, outputs), path)


def cnn(path: Path) -> Path:
    """28x28x1 images -> 10 classes."""
    keras.utils.set_random_seed(4)
    x = keras.Input((28, 28, 1), name="image")
    h = keras.layers.Conv2D(4, 3, activation="relu")(x)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    return _save(keras.Model(x, keras.layers.Dense(10, activation="softmax", name="digits")(h)), path)


def tokens_lstm(path: Path) -> Path:
    """int32 token ids (10 steps, vocab 20) -> Embedding -> LSTM -> 2 outputs."""
    keras.utils.set_random_seed(5)
    x = keras.Input((10,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(20, 8)(x)
    h = keras.layers.LSTM(6)(h)
    return _save(keras.Model(x, keras.layers.Dense(2, name="sentiment")(h)), path)


def int64_identity(path: Path) -> Path:
    """Input `ids` (4 int64) answered unchanged as `ids_out`: int64 values must come back exactly."""
    x = keras.Input((4,), dtype="int64", name="ids")
    return _save(keras.Model(x, keras.layers.Identity(name="ids_out")(x)), path)


def tf_keras_h5(path: Path) -> Path:
    """A Sequential model saved as HDF5 by tf.keras 2.x (the tf_keras package)."""
    import tf_keras

    tf_keras.utils.set_random_seed(6)
    model = tf_keras.Sequential([
        tf_keras.layers.Dense(8, activation="relu", input_shape=(5,)),
        tf_keras.layers.Dense(2, activation="softmax"),
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def corrupt(path: Path) -> Path:
    """Bytes that are no model at all, under a .h5 name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a model\n" * 10)
    return path


def _save(model: keras.Model, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def reference(path: Path, inputs: dict[str, np.ndarray] | np.ndarray):
    """What Keras computes in-process for `inputs` (the oracle the server must match)."""
    model = keras.saving.load_model(path, compile=False)
    return model(inputs, training=False)


def build_repository(root: Path) -> Path:
    """A model folder holding one of every kind the tests exercise."""
    dense(root / "dense.keras")
    two_inputs(root / "two_inputs.keras")
    two_outputs(root / "two_outputs.keras")
    cnn(root / "cnn.keras")
    tokens_lstm(root / "tokens.keras")
    int64_identity(root / "int64_identity.keras")
    tf_keras_h5(root / "legacy.h5")
    dense(root / "versioned" / "1" / "model.keras", seed=11)
    dense(root / "versioned" / "2" / "model.keras", seed=12)
    corrupt(root / "corrupt.h5")
    return root


# --- legacy files for the loader tests (tf_keras saves Keras 2 HDF5; h5py edits it to older layouts) ---

def strip_modules(node):
    """Drop the `module`/`registered_name`/`build_config` keys Keras >= 2.13 adds (the Keras 2.2 layout)."""
    if isinstance(node, dict):
        return {k: strip_modules(v) for k, v in node.items() if k not in ("module", "registered_name", "build_config")}
    if isinstance(node, list):
        return [strip_modules(v) for v in node]
    return node


def edit_h5(path: Path, edit=None, keras_version: str | None = "2.2.4", backend: str | None = "tensorflow") -> Path:
    """Rewrite an HDF5 model's config with `edit(config) -> config` and set its version attributes."""
    import json

    import h5py

    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        if edit is not None:
            handle.attrs["model_config"] = json.dumps(edit(config))
        for group in (handle, handle["model_weights"]):
            for key, value in (("keras_version", keras_version), ("backend", backend)):
                if value is None and key in group.attrs:
                    del group.attrs[key]
                elif value is not None:
                    group.attrs[key] = value
    return path


def legacy_h5(path: Path, build, edit=None, keras_version: str | None = "2.2.4", backend: str | None = "tensorflow",
              low: int | None = None) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """Save `build(tf_keras)` as HDF5, edit it to an older layout; (path, inputs, tf_keras outputs)."""
    import tf_keras

    tf_keras.utils.set_random_seed(7)
    model = build(tf_keras)
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, low, (3, *t.shape[1:])).astype("float32") if low else
              rng.standard_normal((3, *t.shape[1:])).astype("float32") for t in model.inputs]
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    outputs = [np.asarray(o) for o in (outputs if isinstance(outputs, list) else [outputs])]
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    edit_h5(path, edit, keras_version, backend)
    return path, inputs, outputs


def weights_only_h5(path: Path) -> Path:
    """A file written by `save_weights`: weights, no architecture."""
    import tf_keras

    model = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(3,))])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(path)
    return path


def pickle_h5(path: Path) -> Path:
    """A Python pickle under a .h5 name."""
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    return path


def truncated_h5(path: Path) -> Path:
    """A real HDF5 model cut in half."""
    tf_keras_h5(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def lambda_h5(path: Path) -> Path:
    """A Keras 2 HDF5 file with a Lambda layer (bytecode of this Python) the translator refuses: it calls `float`."""
    import tf_keras

    model = tf_keras.Sequential([tf_keras.layers.Lambda(lambda x: x * float(2), input_shape=(3,), name="double"),
                                 tf_keras.layers.Dense(2)])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


CUSTOM_LAYER_CODE = '''
import keras


class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


CUSTOM_OBJECTS = {"Scale": Scale}
'''


def custom_layer_keras(path: Path) -> Path:
    """A Keras 3 file with a custom layer class `Scale`; its code is CUSTOM_LAYER_CODE (not saved)."""
    namespace: dict = {}
    exec(CUSTOM_LAYER_CODE, namespace)  # noqa: S102 - test code
    scale = namespace["Scale"]
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, scale(3.0, name="scale")(inputs))
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path
