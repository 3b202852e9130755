"""Gradients of a Keras model for explanations: integrated gradients, saliency and gradient x input.

Integrated gradients use Gauss-Legendre quadrature over the straight path from the baseline to
the input (`steps` nodes). An integer input that feeds an Embedding layer is attributed over the
Embedding's output and summed over its last axis (its baseline is token ids, embedded too).
Points are computed in passes of at most POINTS_PER_PASS, so the deadline is checked between them.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one trace per output and version is by design

from app import errors  # noqa: E402
from app.serving.explain_types import ExplainOptions, ExplainUnavailable, Explanation, RowExplanation  # noqa: E402
from app.serving.loader import built_structure  # noqa: E402
from app.serving.types import Arrays, Signature  # noqa: E402

POINTS_PER_PASS = 64  # rows x steps points per forward and backward pass


class Explainer:
    """The gradient function of one model version, over its float inputs and its Embedding outputs."""

    def __init__(self, model: Any, signature: Signature):
        self.signature = signature
        self.embeddings: dict[str, Any] = {}  # integer input name -> its Embedding layer
        self.notes: dict[str, str] = {}
        graph_inputs = list(model.inputs)
        by_name = dict(zip(signature.input_names, graph_inputs))
        attributed = []
        for spec in signature.inputs:
            if np.issubdtype(spec.numpy_dtype, np.floating):
                attributed.append(by_name[spec.name])
                continue
            layer = _embedding_of(model, by_name[spec.name])
            if layer is None:
                raise ExplainUnavailable(f"input {spec.name!r} is {spec.dtype} and feeds no Embedding layer: "
                                         "integer inputs have no gradient", {"input": spec.name})
            self.embeddings[spec.name] = layer
            attributed.append(layer.output)
            self.notes[spec.name] = (f"attributed over the output of Embedding layer {layer.name!r}, "
                                     "summed over its last axis")
        if self.embeddings:
            keras_model = type(model) if type(model).__module__.startswith("tf_keras") else _keras_model_class()
            outputs = built_structure(model, "output")
            try:
                model = keras_model(attributed, model.outputs if outputs is None else outputs)
            except Exception as exc:  # noqa: BLE001 - the integer input also feeds something else
                raise ExplainUnavailable(f"the model cannot be cut at its Embedding outputs: "
                                         f"{errors.one_line(exc, 160)}") from None
            structure: Any = list
        else:
            built = built_structure(model, "input")
            structure = (lambda ts: dict(zip(signature.input_names, ts))) if isinstance(built, dict) else list
        self.dtypes = [tf.as_dtype(t.dtype) for t in attributed]
        specs = [tf.TensorSpec((None, *t.shape[1:]), dtype) for t, dtype in zip(attributed, self.dtypes)]
        output_names = signature.output_names

        def outputs_of(tensors: list[Any]) -> dict[str, Any]:
            call_with = structure(tensors) if len(tensors) > 1 or structure is not list else tensors[0]
            result = model(call_with, training=False)
            if isinstance(result, dict):
                return {name: result[name] for name in output_names}
            return dict(zip(output_names, result if isinstance(result, (list, tuple)) else [result]))

        def gradients(output: str, indices: Any, *tensors: Any) -> tuple[Any, list[Any]]:
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                flat = tf.reshape(outputs_of(list(tensors))[output], (tf.shape(indices)[0], -1))
                values = tf.gather(flat, indices, batch_dims=1)
            return values, tape.gradient(values, list(tensors))

        def scores(output: str, *tensors: Any) -> Any:
            return tf.reshape(outputs_of(list(tensors))[output], (tf.shape(tensors[0])[0], -1))

        self._predict = {name: tf.function(lambda *ts, n=name: scores(n, *ts), input_signature=specs)
                         for name in output_names}
        self._gradients = {name: tf.function(lambda indices, *ts, n=name: gradients(n, indices, *ts),
                                             input_signature=[tf.TensorSpec((None,), tf.int32), *specs])
                           for name in output_names}

    def explain(self, arrays: Arrays, options: ExplainOptions) -> Explanation:
        """Attributions of every row of `arrays` (already conformed to the signature) for `options.target`."""
        points = self._attributed(arrays)
        baselines = self._attributed({name: row[np.newaxis] for name, row in options.baselines.items()})
        output = options.target.output
        scores = self._predict[output](*points).numpy()
        rows = scores.shape[0]
        if options.target.index is None:
            indices = scores.argmax(axis=1).astype(np.int32)
        else:
            indices = np.full(rows, options.target.index, dtype=np.int32)
        predictions = scores[np.arange(rows), indices]
        if options.method == "integrated_gradients":
            nodes, weights = np.polynomial.legendre.leggauss(options.steps)
            alphas, weights = (nodes + 1) / 2, weights / 2
            average = self._weighted_gradients(output, baselines, points, indices, alphas, weights,
                                               options.deadline)
            raw = [(x - b) * g for x, b, g in zip(points, baselines, average)]
            at_baseline = self._predict[output](*baselines).numpy()[0, indices]
        else:
            grads = self._weighted_gradients(output, points, points, indices, np.ones(1), np.ones(1),
                                             options.deadline)  # at the input itself
            raw = [np.abs(g) if options.method == "saliency" else x * g for x, g in zip(points, grads)]
        attributions = {name: self._folded(name, a) for name, a in zip(self.signature.input_names, raw)}
        explained = []
        for row in range(rows):
            completeness = None
            if options.method == "integrated_gradients":
                total = float(sum(float(np.sum(a[row])) for a in raw))
                change = float(predictions[row] - at_baseline[row])
                delta = total - change
                completeness = {"sum_of_attributions": total, "prediction_minus_baseline": change, "delta": delta,
                                "relative": abs(delta) / max(abs(change), 1e-12)}
            explained.append(RowExplanation(output, int(indices[row]), float(predictions[row]),
                                            {name: a[row] for name, a in attributions.items()}, completeness))
        return Explanation(explained, dict(self.notes))

    def _attributed(self, arrays: Arrays) -> list[np.ndarray]:
        """The arrays gradients are taken over: float inputs as given, integer inputs through their Embedding."""
        out = []
        for spec, dtype in zip(self.signature.inputs, self.dtypes):
            layer = self.embeddings.get(spec.name)
            value = arrays[spec.name]
            if layer is not None and value.size and not 0 <= value.min() <= value.max() < layer.input_dim:
                raise errors.InvalidRequest(f"token ids of {spec.name!r} (input or baseline) must be from 0 to "
                                            f"{layer.input_dim - 1}, the Embedding's vocabulary",
                                            {"input": spec.name, "input_dim": int(layer.input_dim)},
                                            code="invalid_tokens")
            out.append(np.asarray(layer(value.astype(spec.dtype))) if layer is not None
                       else value.astype(dtype.as_numpy_dtype))
        return out

    def _folded(self, name: str, attribution: np.ndarray) -> np.ndarray:
        return attribution.sum(axis=-1) if name in self.embeddings else attribution

    def _weighted_gradients(self, output: str, starts: list[np.ndarray], ends: list[np.ndarray], indices: np.ndarray,
                            alphas: np.ndarray, weights: np.ndarray, deadline: float) -> list[np.ndarray]:
        """Per row, the sum over steps of weight * gradient at start + alpha (end - start): POINTS_PER_PASS
        points a pass (memory bounded by one pass), the deadline checked before each."""
        rows, steps = len(indices), len(alphas)
        totals = [np.zeros(end.shape, np.float64) for end in ends]
        function = self._gradients[output]
        for first in range(0, rows * steps, POINTS_PER_PASS):
            if time.monotonic() > deadline:
                raise errors.DeadlineExceeded("the explanation ran past its deadline (SERVING_EXPLAIN_TIMEOUT)")
            point = np.arange(first, min(first + POINTS_PER_PASS, rows * steps))
            step, row = point // rows, point % rows  # point (step s, row r) is s * rows + r
            tensors = []
            for start, end in zip(starts, ends):
                origin = start[row] if len(start) == rows else start[np.zeros_like(row)]
                alpha = alphas[step].reshape(-1, *([1] * (end.ndim - 1)))
                tensors.append((origin + alpha * (end[row] - origin)).astype(end.dtype))
            _, grads = function(tf.constant(indices[row]), *tensors)
            if all(grad is None for grad in grads):
                raise ExplainUnavailable(f"output {output!r} has no gradient with respect to any input")
            for total, grad in zip(totals, grads):
                if grad is not None:
                    np.add.at(total, row, weights[step].reshape(-1, *([1] * (total.ndim - 1))) * grad.numpy())
        return totals


def _keras_model_class() -> Any:
    import keras

    return keras.Model


def _embedding_of(model: Any, graph_input: Any) -> Any:
    """The Embedding layer that reads `graph_input` directly, if any."""
    for layer in model.layers:
        if type(layer).__name__ == "Embedding":
            try:
                source = layer.input
            except (AttributeError, ValueError):
                continue
            if source is graph_input:
                return layer
    return None
