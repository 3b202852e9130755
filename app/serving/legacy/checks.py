"""Refuse what cannot be served: untranslatable Keras 1 Merge layers, Lambda code the translator does not recognise."""
from __future__ import annotations

import base64
import binascii
import marshal
import sys
from typing import Any

from app.errors import RefusedConfig
from app.serving.legacy.lambda_bytecode import UntranslatableLambda
from app.serving.legacy.lambda_translate import lambda_translation_on, translate_lambda
from app.serving.legacy.merge import merge_problem
from app.serving.legacy.walk import iter_layers

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def check_config(model_config: dict[str, Any], safe_mode: bool, keras_version: str | None,
                 setting_hint: str = '"safe_mode": false in the model\'s serving.json') -> None:
    """Raise RefusedConfig for an untranslatable Merge, or an untranslated Lambda (safe mode, another Python)."""
    translating = lambda_translation_on()
    for node in iter_layers(model_config):
        config = node.get("config") if isinstance(node.get("config"), dict) else {}
        name = config.get("name", node.get("name", "?"))
        if node["class_name"] == "Merge":
            problem = merge_problem(node) or _merge_place_problem(model_config, node)
            if problem:
                raise RefusedConfig(f"{problem}; Keras 2 and 3 have no 'Merge' layer: rebuild the model with the "
                                    "functional API (Concatenate, Add, ...)")
        if node["class_name"] != "Lambda":
            continue
        why = ""
        if translating:
            try:
                translate_lambda(config)
                continue  # translated into an expression: nothing stored runs
            except UntranslatableLambda as exc:
                why = f", whose code the translator does not recognise ({exc})"
        if safe_mode:
            raise RefusedConfig(f"layer {name!r} is a Lambda layer (stored Python code){why}, refused in safe mode; "
                                f"set {setting_hint} to run it (trusted files only)")
        stored_code = config.get("function_type", "lambda") == "lambda"
        if stored_code and not _bytecode_loads(config.get("function")):
            saved = f"Keras {keras_version}" if keras_version else "an older Keras"
            raise RefusedConfig(f"Lambda layer {name!r} stores Python bytecode written by another Python version "
                                f"(saved by {saved}){why}; it cannot run on Python {PYTHON}: rebuild the model in "
                                "code and load only its weights, or re-save it on this Python version")


def _merge_place_problem(model_config: dict[str, Any], merge: dict[str, Any]) -> str | None:
    """Why a Merge sits where no translation reaches: neither a functional node nor a Sequential's first layer."""
    if "inbound_nodes" in merge:
        return None
    for node in iter_layers(model_config):
        config = node.get("config")
        layers = config if isinstance(config, list) else (config or {}).get("layers") if isinstance(
            config, dict) else None
        if node["class_name"] == "Sequential" and isinstance(layers, list) and layers and layers[0] is merge:
            return None
    name = (merge.get("config") or {}).get("name", "?")
    return f"layer {name!r} is a Keras 1 'Merge' layer that is neither a functional node nor a Sequential's first layer"


def _bytecode_loads(function: Any) -> bool:
    """Whether a stored Lambda function's marshalled code object can be read by this Python."""
    if isinstance(function, dict):  # Keras 3: {"class_name": "__lambda__", "config": {"code": ...}}
        inner = function.get("config") or {}
        if "code" not in inner:
            return True  # a registered function by name, not bytecode
        function = inner["code"]
    elif isinstance(function, (list, tuple)):
        function = function[0] if function else None
    if not isinstance(function, str):
        return True
    try:
        raw = base64.b64decode(function.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raw = function.encode("raw_unicode_escape")
    try:
        code = marshal.loads(raw)
    except (EOFError, ValueError, TypeError):
        return False
    return hasattr(code, "co_code")
