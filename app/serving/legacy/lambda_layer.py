"""`TranslatedLambda`: the one Keras layer of ours that evaluates a recognised Lambda expression tree.

The tree comes from `lambda_translate` (never from executing stored code); each node is evaluated
with `keras.ops`, the operation the old Keras backend function or Python operator performed.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

from app.serving.legacy.lambda_translate import TRANSLATED_CLASS

BINARY = {"+": ops.add, "-": ops.subtract, "*": ops.multiply, "/": ops.divide, "//": ops.floor_divide,
          "**": ops.power}
UNARY_CALLS = {"square": ops.square, "sqrt": ops.sqrt, "abs": ops.absolute, "exp": ops.exp, "log": ops.log,
               "tanh": ops.tanh, "sigmoid": ops.sigmoid, "relu": ops.relu, "softplus": ops.softplus,
               "softsign": ops.softsign, "sin": ops.sin, "cos": ops.cos, "sign": ops.sign,
               "negative": ops.negative}
REDUCTIONS = {"mean": ops.mean, "sum": ops.sum, "max": ops.max, "min": ops.min, "prod": ops.prod,
              "std": ops.std, "var": ops.var}


def _axis(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _l2_normalize(x: Any, axis: Any = None, epsilon: float = 1e-12) -> Any:
    """Keras 2's K.l2_normalize (tf.nn.l2_normalize): x * rsqrt(max(sum(x**2), epsilon))."""
    return ops.multiply(x, ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=_axis(axis), keepdims=True), epsilon)))


def _resize(x: Any, size: Any, method: str = "bilinear", preserve_aspect_ratio: bool = False,
            antialias: bool = False) -> Any:
    """tf.image.resize with its defaults (the aspect-ratio option is not translated)."""
    if preserve_aspect_ratio:
        raise ValueError("tf.image.resize(preserve_aspect_ratio=True) is not translated")
    return ops.image.resize(x, tuple(size), interpolation=method, antialias=antialias)


CALLS = {
    "clip": lambda x, min_value, max_value: ops.clip(x, min_value, max_value),
    "expand_dims": lambda x, axis=-1: ops.expand_dims(x, axis),
    "squeeze": lambda x, axis=None: ops.squeeze(x, _axis(axis)),
    "concatenate": lambda tensors, axis=-1: ops.concatenate(list(tensors), axis=axis),
    "stack": lambda tensors, axis=0: ops.stack(list(tensors), axis=axis),
    "reshape": lambda x, shape: ops.reshape(x, tuple(shape)),
    "transpose": lambda x, axes=None: ops.transpose(x, _axis(axes)),
    "l2_normalize": _l2_normalize,
    "softmax": lambda x, axis=-1: ops.softmax(x, axis=axis),
    "pow": lambda x, a: ops.power(x, a),
    "maximum": lambda x, y: ops.maximum(x, y),
    "minimum": lambda x, y: ops.minimum(x, y),
    "cast": lambda x, dtype: ops.cast(x, dtype),
    "resize": _resize,
}


def evaluate(node: list[Any], inputs: Any) -> Any:
    """The value of one expression node for the layer's `inputs`."""
    kind = node[0]
    if kind == "input":
        return inputs
    if kind == "const":
        return node[1]
    if kind == "ellipsis":
        return Ellipsis
    if kind == "slice":
        return slice(*(evaluate(part, inputs) for part in node[1:]))
    if kind == "tuple":
        return tuple(evaluate(item, inputs) for item in node[1])
    if kind == "list":
        return [evaluate(item, inputs) for item in node[1]]
    if kind == "binary":
        return BINARY[node[1]](evaluate(node[2], inputs), evaluate(node[3], inputs))
    if kind == "unary":
        value = evaluate(node[2], inputs)
        return ops.negative(value) if node[1] == "-" else value
    if kind == "subscript":
        return evaluate(node[1], inputs)[evaluate(node[2], inputs)]
    if kind == "call":
        args = {key: evaluate(value, inputs) for key, value in node[3].items()}
        if node[1] in UNARY_CALLS:
            return UNARY_CALLS[node[1]](args["x"])
        if node[1] in REDUCTIONS:
            return REDUCTIONS[node[1]](args["x"], axis=_axis(args.get("axis")), keepdims=bool(args.get("keepdims")))
        return CALLS[node[1]](**args)
    raise ValueError(f"unknown expression node {kind!r}")


@keras.saving.register_keras_serializable(package="keras_serving", name=TRANSLATED_CLASS)
class TranslatedLambda(keras.layers.Layer):
    """A Lambda layer whose stored bytecode was translated into an expression tree (no stored code runs)."""

    def __init__(self, expression: list[Any], text: str = "", declared_shape: list[Any] | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.expression, self.text, self.declared_shape = expression, text, declared_shape

    def call(self, inputs: Any) -> Any:
        """The expression evaluated on `inputs`."""
        return evaluate(self.expression, inputs)

    def compute_output_spec(self, inputs: Any) -> Any:
        """The symbolic output; it must agree with the `output_shape` the file stored (batch axis aside)."""
        spec = super().compute_output_spec(inputs)
        declared = self.declared_shape
        if declared is not None and hasattr(spec, "shape"):
            got = list(spec.shape[1:])
            if len(got) != len(declared) or any(d is not None and g is not None and int(d) != int(g)
                                                for g, d in zip(got, declared)):
                raise ValueError(f"{self.name}: shape {got} is not the stored output_shape {declared}")
        return spec

    def get_config(self) -> dict[str, Any]:
        """The layer's config: the expression tree, its text and the stored output shape."""
        return {**super().get_config(), "expression": self.expression, "text": self.text,
                "declared_shape": self.declared_shape}


def translated_lambdas(model: Any) -> list[dict[str, str]]:
    """`[{"layer", "expression"}]` for every TranslatedLambda in `model` (nested models included)."""
    try:
        layers = list(model._flatten_layers(include_self=False, recursive=True))  # noqa: SLF001
    except (AttributeError, TypeError):
        layers = list(getattr(model, "layers", []))
    return [{"layer": layer.name, "expression": layer.text} for layer in layers if isinstance(layer, TranslatedLambda)]
