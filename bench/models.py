"""The bench models (an MLP and a small CNN), saved as `.keras` files, and their JSON bodies."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MLP_INPUTS, MLP_HIDDEN, MLP_OUTPUTS = 256, 64, 10
CNN_SHAPE = (28, 28, 1)


def build_models(folder: Path) -> dict[str, Path]:
    """Save `mlp.keras` and `cnn.keras` into `folder` (imports Keras; call it in a child or once)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(7)
    x = keras.Input((MLP_INPUTS,), name="features")
    h = keras.layers.Dense(MLP_HIDDEN, activation="relu")(x)
    mlp = keras.Model(x, keras.layers.Dense(MLP_OUTPUTS, activation="softmax", name="probs")(h))
    image = keras.Input(CNN_SHAPE, name="image")
    c = keras.layers.Conv2D(8, 3, activation="relu")(image)
    c = keras.layers.MaxPooling2D()(c)
    c = keras.layers.Conv2D(16, 3, activation="relu")(c)
    c = keras.layers.MaxPooling2D()(c)
    c = keras.layers.Flatten()(c)
    cnn = keras.Model(image, keras.layers.Dense(10, activation="softmax", name="digits")(c))
    paths = {"mlp": folder / "mlp.keras", "cnn": folder / "cnn.keras"}
    mlp.save(paths["mlp"])
    cnn.save(paths["cnn"])
    return paths


def sample_rows(model: str, rows: int, seed: int = 0) -> np.ndarray:
    """Deterministic float32 input rows for `model`."""
    shape = (rows, MLP_INPUTS) if model == "mlp" else (rows, *CNN_SHAPE)
    return np.random.default_rng(seed).random(shape, dtype=np.float32).round(4)


def output_shape(model: str, rows: int) -> tuple[int, ...]:
    """Shape of the model's output for `rows` rows (both bench models answer 10 classes)."""
    return (rows, 10)


def predict_body(model: str, rows: int) -> bytes:
    """The JSON body of a native `/predict` request with `rows` rows."""
    import orjson

    return orjson.dumps({"model": model, "instances": sample_rows(model, rows)},
                        option=orjson.OPT_SERIALIZE_NUMPY)
