"""Walk the layer configs of a stored model config (nested models and wrappers included)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Config = dict[str, Any]


def iter_layers(node: Any) -> Iterator[Config]:
    """Every layer config (`{"class_name", "config"}`) in the tree, nested models and wrappers included."""
    if not isinstance(node, dict) or "class_name" not in node:
        return
    yield node
    config = node.get("config")
    layers = config if isinstance(config, list) else (config or {}).get("layers", [])
    if isinstance(layers, list):
        for child in layers:
            yield from iter_layers(child)
    if isinstance(config, dict):
        for key in ("layer", "backward_layer"):
            yield from iter_layers(config.get(key))


def layer_configs(node: Any) -> Iterator[tuple[Config, Config]]:
    """(layer, its `config`) for every layer in the tree whose config is an object."""
    for layer in iter_layers(node):
        config = layer.get("config")
        if isinstance(config, dict):
            yield layer, config
