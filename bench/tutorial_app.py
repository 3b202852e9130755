"""The tutorial app: `load_model` at import and `model.predict` per request (`gunicorn -w 2`)."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from tensorflow import keras  # noqa: E402

MODEL_DIR = Path(os.environ["BENCH_MODEL_DIR"])
models = {path.stem: keras.models.load_model(path) for path in sorted(MODEL_DIR.glob("*.keras"))}
app = Flask(__name__)


@app.route("/predict", methods=["POST"])
def predict():
    """What most blog posts do: parse, predict, tolist, jsonify."""
    data = request.get_json()
    model = models[data.get("model", "mlp")]
    predictions = model.predict(np.array(data["instances"]))
    return jsonify({"model": data.get("model", "mlp"), "version": 1, "predictions": predictions.tolist()})


@app.route("/health/ready")
def ready():
    """Ready once imported (models load at import)."""
    return jsonify({"status": "ready"})
