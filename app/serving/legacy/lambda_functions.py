"""The backend functions a translated Lambda may call, by the names old Keras code used for them.

A name is the dotted attribute path from a module name in MODULES (`K.mean`, `tf.image.resize`,
`keras.backend.square` read as `K.square`). Each maps to one operation of ours (`lambda_layer`
evaluates it with `keras.ops`), its parameter names in positional order, and renamed keywords.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from app.serving.legacy.lambda_bytecode import UntranslatableLambda

# Module names as old Keras code imported them, and the prefix they stand for.
MODULES = {"K": "K", "backend": "K", "keras.backend": "K", "tf.keras.backend": "K", "tensorflow.keras.backend": "K",
           "tf": "tf", "tensorflow": "tf", "np": "np", "numpy": "np", "keras": "keras",
           "tf.keras": "keras", "tf.image": "tf.image", "tf.nn": "tf.nn", "tf.math": "tf.math"}
# Attribute constants a Lambda may read (and Python 2's True/False/None, which were global names).
CONSTANTS: dict[str, Any] = {"np.pi": math.pi, "np.e": math.e, "True": True, "False": False, "None": None}
REQUIRED = object()
Node = list[Any]


@dataclass(frozen=True)
class Operation:
    """One operation: the parameters that take tensors and the others' defaults (constants only)."""

    tensors: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)


UNARY = ("square", "sqrt", "abs", "exp", "log", "tanh", "sigmoid", "relu", "softplus", "softsign", "sin", "cos",
         "sign", "negative")
REDUCTIONS = ("mean", "sum", "max", "min", "prod", "std", "var")
OPERATIONS: dict[str, Operation] = {
    **{name: Operation(("x",)) for name in UNARY},
    **{name: Operation(("x",), {"axis": None, "keepdims": False}) for name in REDUCTIONS},
    "clip": Operation(("x",), {"min_value": REQUIRED, "max_value": REQUIRED}),
    "expand_dims": Operation(("x",), {"axis": -1}),
    "squeeze": Operation(("x",), {"axis": None}),
    "concatenate": Operation(("tensors",), {"axis": -1}),
    "stack": Operation(("tensors",), {"axis": 0}),
    "reshape": Operation(("x",), {"shape": REQUIRED}),
    "transpose": Operation(("x",), {"axes": None}),
    "l2_normalize": Operation(("x",), {"axis": None, "epsilon": 1e-12}),
    "softmax": Operation(("x",), {"axis": -1}),
    "pow": Operation(("x", "a")),
    "maximum": Operation(("x", "y")),
    "minimum": Operation(("x", "y")),
    "cast": Operation(("x",), {"dtype": REQUIRED}),
    "resize": Operation(("x",), {"size": REQUIRED, "method": "bilinear", "preserve_aspect_ratio": False,
                                 "antialias": False}),
}


@dataclass(frozen=True)
class Name:
    """A whitelisted dotted name: its operation, positional parameter order and keyword renames."""

    operation: str
    positional: tuple[str, ...]
    renames: dict[str, str] = field(default_factory=dict)


def _names() -> dict[str, Name]:
    names: dict[str, Name] = {}
    for op in UNARY:
        for prefix in ("K", "tf", "tf.math", "np"):
            names[f"{prefix}.{op}"] = Name(op, ("x",), {"a": "x"})
    for alias, op in (("tf.nn.relu", "relu"), ("tf.nn.sigmoid", "sigmoid"), ("tf.nn.tanh", "tanh"),
                      ("tf.nn.softplus", "softplus"), ("tf.nn.softsign", "softsign"), ("np.absolute", "abs")):
        names[alias] = Name(op, ("x",), {"features": "x"})
    tf_reduction = {"input_tensor": "x", "keep_dims": "keepdims"}
    for op in REDUCTIONS:
        names[f"K.{op}"] = Name(op, ("x", "axis", "keepdims"))
        names[f"np.{op}"] = Name(op, ("x", "axis"), {"a": "x"})
    for op in ("mean", "sum", "max", "min", "prod", "std", "variance"):
        names[f"tf.reduce_{op}"] = names[f"tf.math.reduce_{op}"] = Name(
            "var" if op == "variance" else op, ("x", "axis", "keepdims"), tf_reduction)
    names.update({
        "K.clip": Name("clip", ("x", "min_value", "max_value")),
        "tf.clip_by_value": Name("clip", ("x", "min_value", "max_value"),
                                 {"t": "x", "clip_value_min": "min_value", "clip_value_max": "max_value"}),
        "np.clip": Name("clip", ("x", "min_value", "max_value"),
                        {"a": "x", "a_min": "min_value", "a_max": "max_value"}),
        "K.expand_dims": Name("expand_dims", ("x", "axis"), {"dim": "axis"}),
        "tf.expand_dims": Name("expand_dims", ("x", "axis"), {"input": "x", "dim": "axis"}),
        "np.expand_dims": Name("expand_dims", ("x", "axis"), {"a": "x"}),
        "K.squeeze": Name("squeeze", ("x", "axis")),
        "tf.squeeze": Name("squeeze", ("x", "axis"), {"input": "x", "squeeze_dims": "axis"}),
        "K.concatenate": Name("concatenate", ("tensors", "axis")),
        "tf.concat": Name("concatenate", ("tensors", "axis"), {"values": "tensors"}),
        "np.concatenate": Name("concatenate", ("tensors", "axis"), {"arrays": "tensors"}),
        "K.stack": Name("stack", ("tensors", "axis"), {"x": "tensors"}),
        "tf.stack": Name("stack", ("tensors", "axis"), {"values": "tensors"}),
        "K.reshape": Name("reshape", ("x", "shape")),
        "tf.reshape": Name("reshape", ("x", "shape"), {"tensor": "x"}),
        "K.permute_dimensions": Name("transpose", ("x", "axes"), {"pattern": "axes"}),
        "tf.transpose": Name("transpose", ("x", "axes"), {"a": "x", "perm": "axes"}),
        "K.l2_normalize": Name("l2_normalize", ("x", "axis")),
        "tf.nn.l2_normalize": Name("l2_normalize", ("x", "axis", "epsilon"), {"dim": "axis"}),
        "K.softmax": Name("softmax", ("x", "axis")),
        "tf.nn.softmax": Name("softmax", ("x", "axis"), {"logits": "x", "dim": "axis"}),
        "K.pow": Name("pow", ("x", "a")),
        "tf.pow": Name("pow", ("x", "a"), {"y": "a"}),
        "K.maximum": Name("maximum", ("x", "y")), "tf.maximum": Name("maximum", ("x", "y")),
        "K.minimum": Name("minimum", ("x", "y")), "tf.minimum": Name("minimum", ("x", "y")),
        "K.cast": Name("cast", ("x", "dtype")),
        "tf.cast": Name("cast", ("x", "dtype")),
        "tf.image.resize": Name("resize", ("x", "size", "method", "preserve_aspect_ratio", "antialias"),
                                {"images": "x"}),
    })
    return names


NAMES: dict[str, Name] = _names()


def is_constant(node: Any) -> bool:
    """Whether a node is built from constants only (it may be a non-tensor argument)."""
    if not isinstance(node, list):
        return False
    if node[0] in ("const", "ellipsis"):
        return True
    if node[0] == "slice":
        return all(is_constant(part) for part in node[1:])
    return node[0] in ("tuple", "list") and all(is_constant(item) for item in node[1])


def canonical(dotted: str) -> str:
    """`keras.backend.mean` as `K.mean`: the longest module prefix replaced by what it stands for."""
    head, _, attribute = dotted.rpartition(".")
    return f"{MODULES.get(head, head)}.{attribute}" if head else dotted


def bind(dotted: str, positional: list[Node], keywords: dict[str, Node]) -> Node:
    """A call node: arguments bound to the operation's parameters; non-tensor ones must be constants."""
    name = NAMES.get(dotted)
    if name is None:
        raise UntranslatableLambda(f"name {dotted!r} is not on the whitelist")
    operation = OPERATIONS[name.operation]
    if len(positional) > len(name.positional):
        raise UntranslatableLambda(f"{dotted} is called with {len(positional)} positional arguments")
    bound = dict(zip(name.positional, positional))
    for key, value in keywords.items():
        key = name.renames.get(key, key)
        if key in bound or (key not in operation.tensors and key not in operation.defaults):
            raise UntranslatableLambda(f"argument {key!r} of {dotted} is not recognised")
        bound[key] = value
    for key in operation.tensors:
        if key not in bound:
            raise UntranslatableLambda(f"{dotted} is called without {key!r}")
    for key, default in operation.defaults.items():
        if key in bound and not is_constant(bound[key]):
            raise UntranslatableLambda(f"argument {key!r} of {dotted} is not a constant")
        if key not in bound and default is REQUIRED:
            raise UntranslatableLambda(f"{dotted} is called without {key!r}")
    return ["call", name.operation, dotted, bound]
