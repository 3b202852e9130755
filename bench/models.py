"""The bench models (an MLP and a small CNN), saved as `.keras` files, and the scenarios' JSON bodies."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MLP_INPUTS, MLP_HIDDEN, MLP_OUTPUTS = 256, 64, 10
CNN_SHAPE = (28, 28, 1)


@dataclass(frozen=True)
class Scenario:
    """One wrk scenario: `rows` rows for `model` per request, with full-precision or 4-decimal numbers."""

    name: str
    model: str
    rows: int
    short_numbers: bool = False


# Full precision is what a client sends that calls json.dumps on float32 values turned into Python
# floats (`.tolist()`): 17 significant digits, e.g. 0.12345679104328156. The short scenario keeps the
# 4-decimal numbers (0.1235) the bench used to send everywhere, for comparison.
SCENARIOS = (Scenario("mlp-1", "mlp", 1), Scenario("mlp-32", "mlp", 32),
             Scenario("mlp-32-short", "mlp", 32, short_numbers=True), Scenario("cnn-1", "cnn", 1))


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
    """Deterministic float32 input rows for `model`, uniform in [0, 1)."""
    shape = (rows, MLP_INPUTS) if model == "mlp" else (rows, *CNN_SHAPE)
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def output_shape(model: str, rows: int) -> tuple[int, ...]:
    """Shape of the model's output for `rows` rows (both bench models answer 10 classes)."""
    return (rows, 10)


def predict_body(scenario: Scenario) -> bytes:
    """The JSON body of the scenario's native `/predict` request."""
    rows = sample_rows(scenario.model, scenario.rows)
    if scenario.short_numbers:
        import orjson  # writes each float32 in its shortest form: 0.1235

        return orjson.dumps({"model": scenario.model, "instances": rows.round(4)}, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps({"model": scenario.model, "instances": rows.tolist()}).encode()
