"""The HTTP ceiling: the same Flask + gunicorn layout answering a constant, with no model.

`gunicorn -c gunicorn.conf.py bench.ceiling_app:app`. The answer has the shape the model
would give (rows x 10), chosen from the body's length among the bench scenarios' bodies.
"""
from __future__ import annotations

import orjson
from flask import Flask, Response, request

from bench.models import SCENARIOS, output_shape, predict_body

app = Flask(__name__)


def _constant(model: str, rows: int) -> bytes:
    shape = output_shape(model, rows)
    return orjson.dumps({"model": model, "version": 1,
                         "predictions": [[0.1] * shape[1] for _ in range(shape[0])]})


ANSWERS: dict[int, bytes] = {len(predict_body(s)): _constant(s.model, s.rows) for s in SCENARIOS}
DEFAULT = _constant("mlp", 1)


@app.post("/predict")
def predict() -> Response:
    """Read the body like the service does, then answer a constant of the same shape."""
    body = request.get_data()
    return Response(ANSWERS.get(len(body), DEFAULT), mimetype="application/json")


@app.get("/health/ready")
def ready() -> Response:
    """Always ready."""
    return Response(b'{"status":"ready"}', mimetype="application/json")
