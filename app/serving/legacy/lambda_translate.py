"""Translate a stored Lambda layer config into the expression our `TranslatedLambda` layer evaluates.

Nothing stored is executed: the code object is read by `lambda_bytecode` (xdis) under every
candidate Python version and recognised by `lambda_grammar`; the readings that fit the grammar
must agree on one expression, else the layer is refused with the reason of the reading that got
furthest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.serving.legacy.lambda_bytecode import (
    UntranslatableLambda,
    has_closure,
    read_code,
    stored_bytes,
    stored_defaults,
)
from app.serving.legacy.lambda_grammar import Node, Translator, constant

PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "unary": 3, "**": 4}
TRANSLATED_CLASS = "TranslatedLambda"


@dataclass(frozen=True)
class TranslatedExpression:
    """A recognised Lambda: its expression tree, the tree written out, and the Python versions it reads as."""

    tree: Node
    text: str
    versions: tuple[str, ...]


def translate_lambda(config: dict[str, Any]) -> TranslatedExpression:
    """The expression of a Lambda layer's config; raise UntranslatableLambda naming what is not recognised."""
    function = config.get("function")
    if config.get("function_type", "lambda") != "lambda" or \
            (isinstance(function, dict) and function.get("class_name") != "__lambda__"):
        raise UntranslatableLambda("it refers to a Python function by name, not to stored bytecode")
    if has_closure(function) or (isinstance(function, dict) and (function.get("config") or {}).get("closure")):
        raise UntranslatableLambda("its function has a closure (values captured from an enclosing function)")
    raw = stored_bytes(function)
    if raw is None:
        raise UntranslatableLambda("it stores no bytecode")
    views = read_code(raw)
    if not views:
        raise UntranslatableLambda("its bytecode is not a code object of Python 2.7 or 3.4 to 3.12")
    defaults = stored_defaults(function)
    arguments = config.get("arguments") or {}
    found: dict[str, list[str]] = {}
    trees: dict[str, Node] = {}
    failures: list[tuple[bool, int, int, str, str]] = []
    for order, view in enumerate(views):
        version = f"{view.version[0]}.{view.version[1]}"
        translator = Translator(view, bound_parameters(view.parameters, defaults, arguments))
        try:
            tree = translator.run()
        except UntranslatableLambda as exc:
            failures.append((view.plausible, translator.steps, order, version, str(exc)))
            continue
        text = render(tree)
        trees[text] = tree
        found.setdefault(text, []).append(version)
    if len(found) == 1:
        (text, versions), = found.items()
        return TranslatedExpression(trees[text], text, tuple(versions))
    if found:
        raise UntranslatableLambda("its bytecode reads as different expressions under different Python versions: "
                                   + "; ".join(f"{text} ({', '.join(v)})" for text, v in found.items()))
    *_, version, reason = max(failures, key=lambda failure: failure[:3])  # the reading that got furthest
    raise UntranslatableLambda(f"{reason} (bytecode read as Python {version})")


def bound_parameters(parameters: tuple[str, ...], defaults: tuple[Any, ...], arguments: dict[str, Any]) -> dict:
    """Values of the parameters after the input: the layer's `arguments`, else the stored defaults."""
    bound: dict[str, Node] = {}
    rest = parameters[1:]
    for name, value in zip(rest[len(rest) - len(defaults):], defaults):
        bound[name] = constant(value, f"the default of {name!r}")
    for name, value in arguments.items():
        if name in rest:
            bound[name] = constant(value, f"argument {name!r}")
    return bound


def render(node: Node) -> str:
    """The expression written out as Python (`x / 127.5 - 1.0`), with the parentheses it needs."""
    return _render(node)[0]


def _render(node: Node) -> tuple[str, int]:
    """(text, precedence) of a node; atoms have precedence 9."""
    kind = node[0]
    if kind == "input":
        return "x", 9
    if kind == "const":
        return repr(node[1]), (9 if not isinstance(node[1], (int, float)) or node[1] >= 0 else 3)
    if kind == "ellipsis":
        return "...", 9
    if kind == "unary":
        text, inner = _render(node[2])
        return f"{node[1]}{text if inner >= 3 else f'({text})'}", 3
    if kind == "binary":
        op, level = node[1], PRECEDENCE[node[1]]
        left, left_level = _render(node[2])
        right, right_level = _render(node[3])
        right_assoc = op == "**"
        left = left if left_level > level or (left_level == level and not right_assoc) else f"({left})"
        right = right if right_level > level or (right_level == level and right_assoc) else f"({right})"
        return f"{left} {op} {right}", level
    if kind == "slice":
        parts = ["" if part == ["const", None] else render(part) for part in node[1:]]
        return (":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else "")), 9
    if kind in ("list", "tuple"):
        items = ", ".join(render(item) for item in node[1])
        if kind == "list":
            return f"[{items}]", 9
        return f"({items}{',' if len(node[1]) == 1 else ''})", 9
    if kind == "subscript":
        base, level = _render(node[1])
        index = node[2]
        inner = ", ".join(render(i) for i in index[1]) if index[0] == "tuple" else render(index)
        return f"{base if level == 9 else f'({base})'}[{inner}]", 9
    if kind == "call":
        args = dict(node[3])
        first = next(iter(args))
        text = ", ".join([render(args.pop(first))] + [f"{key}={render(value)}" for key, value in args.items()])
        return f"{node[2]}({text})", 9
    raise UntranslatableLambda(f"unknown node {kind!r}")


def lambda_translation_on() -> bool:
    """SERVING_TRANSLATE_LAMBDA (default true), read from the environment when a version loads."""
    import os

    from pydantic import TypeAdapter, ValidationError

    value = os.environ.get("SERVING_TRANSLATE_LAMBDA", "true").strip()
    try:
        return TypeAdapter(bool).validate_python(value)
    except ValidationError:
        return True


def lambda_bytecode(model_config: dict[str, Any]) -> bool:
    """Lambda layers whose bytecode fits the grammar become TranslatedLambda layers (no stored code runs)."""
    from app.serving.legacy.walk import layer_configs

    if not lambda_translation_on():
        return False
    changed = False
    for node, config in list(layer_configs(model_config)):
        if node["class_name"] != "Lambda":
            continue
        try:
            translated = translate_lambda(config)
        except UntranslatableLambda:
            continue  # left to Keras: refused by check_config unless safe mode is off and this Python wrote it
        declared = config.get("output_shape")
        declared = list(declared) if isinstance(declared, (list, tuple)) and config.get(
            "output_shape_type", "raw") == "raw" and all(d is None or isinstance(d, int) for d in declared) else None
        node["class_name"] = TRANSLATED_CLASS
        node.pop("module", None)
        node.pop("registered_name", None)
        node["config"] = {key: config[key] for key in ("name", "trainable", "batch_input_shape", "batch_shape")
                          if key in config}
        if isinstance(config.get("dtype"), str):
            node["config"]["dtype"] = config["dtype"]
        node["config"].update(expression=translated.tree, text=translated.text, declared_shape=declared)
        changed = True
    return changed
