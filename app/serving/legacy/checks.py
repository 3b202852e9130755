"""Refuse files whose config cannot be served as-is: Keras 1 Merge, Lambda layers, foreign bytecode."""
from __future__ import annotations

import base64
import binascii
import marshal
import sys
from typing import Any

from app.errors import RefusedConfig
from app.serving.legacy.walk import iter_layers

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def check_config(model_config: dict[str, Any], safe_mode: bool, keras_version: str | None,
                 setting_hint: str = '"safe_mode": false in the model\'s serving.json') -> None:
    """Raise RefusedConfig for a Keras 1 Merge layer, a Lambda in safe mode, or Lambda bytecode from another Python."""
    for node in iter_layers(model_config):
        config = node.get("config") if isinstance(node.get("config"), dict) else {}
        name = config.get("name", node.get("name", "?"))
        if node["class_name"] == "Merge":
            raise RefusedConfig(f"layer {name!r} is a Keras 1 'Merge' layer, which no longer exists in Keras 2 or 3; "
                          "rebuild the model with the functional API (Concatenate, Add, ...)")
        if node["class_name"] != "Lambda":
            continue
        if safe_mode:
            raise RefusedConfig(f"layer {name!r} is a Lambda layer (stored Python code), refused in safe mode; "
                          f"set {setting_hint} to allow it (trusted files only)")
        stored_code = config.get("function_type", "lambda") == "lambda"
        if stored_code and not _bytecode_loads(config.get("function")):
            saved = f"Keras {keras_version}" if keras_version else "an older Keras"
            raise RefusedConfig(f"Lambda layer {name!r} stores Python bytecode written by another Python version "
                          f"(saved by {saved}); it cannot run on Python {PYTHON}: rebuild the model in code "
                          "and load only its weights, or re-save it on this Python version")


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
