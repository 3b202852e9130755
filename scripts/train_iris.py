"""Train the demo Iris classifier from data/iris.csv and save it as models/iris/1/iris.keras.

Inputs: `features` = [sepal length, sepal width, petal length, petal width] in cm.
Output: `species` = probabilities of [setosa, versicolor, virginica].
Run: .venv/bin/python scripts/train_iris.py
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("setosa", "versicolor", "virginica")


def read_iris(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features (150x4 float32) and labels (150 ints) from scikit-learn's iris.csv layout."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    features = np.array([[float(v) for v in row[:4]] for row in rows], dtype="float32")
    labels = np.array([int(row[4]) for row in rows], dtype="int64")
    return features, labels


def build(features: np.ndarray) -> keras.Model:
    inputs = keras.Input(shape=(4,), name="features")
    norm = keras.layers.Normalization(name="normalize")
    norm.adapt(features)
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(norm(inputs))
    outputs = keras.layers.Dense(3, activation="softmax", name="species")(hidden)
    return keras.Model(inputs, outputs, name="iris")


def main() -> None:
    keras.utils.set_random_seed(7)
    features, labels = read_iris(ROOT / "data" / "iris.csv")
    model = build(features)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(features, labels, epochs=60, batch_size=16, verbose=0)
    loss, accuracy = model.evaluate(features, labels, verbose=0)
    print(f"training accuracy {accuracy:.3f} (loss {loss:.3f})")
    target = ROOT / "models" / "iris" / "1" / "iris.keras"
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save(target)
    print(f"saved {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
