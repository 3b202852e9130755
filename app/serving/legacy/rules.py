"""Named translation rules: rewrite legacy (Keras 1.x / 2.x) model configs into what Keras 3 reads.

Each rule takes the whole decoded `model_config` (a dict, edited in place) and returns True
when it changed something. Rules are written from failure causes, not from file names.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.errors import UntranslatableConfig
from app.serving.legacy.keras1 import keras1_names
from app.serving.legacy.lambda_translate import lambda_bytecode
from app.serving.legacy.merge import keras1_merge
from app.serving.legacy.walk import Config, iter_layers, layer_configs

WRAPPERS = ("TimeDistributed", "Bidirectional")
MODEL_CLASSES = ("Sequential", "Model", "Functional")


def sequential_layer_list(model_config: Config) -> bool:
    """Keras 1.x / 2.0-2.1 store a Sequential's config as a bare list of layers; Keras 3 wants a dict."""
    changed = False
    for node in iter_layers(model_config):
        if node["class_name"] == "Sequential" and isinstance(node.get("config"), list):
            node["config"] = {"name": node.get("name", "sequential"), "layers": node["config"]}
            changed = True
    return changed


def first_layer_batch_input_shape(model_config: Config) -> bool:
    """`batch_input_shape` on a Sequential's first layer becomes an explicit InputLayer."""
    changed = False
    for node in iter_layers(model_config):
        if node["class_name"] != "Sequential" or not isinstance(node.get("config"), dict):
            continue
        layers = node["config"].get("layers") or []
        if not layers or layers[0].get("class_name") == "InputLayer":
            continue
        first = layers[0].get("config", {})
        shape = first.pop("batch_input_shape", None)
        if shape is None:
            continue
        dtype = first.get("dtype") or "float32"
        dtype = dtype if isinstance(dtype, str) else "float32"
        name = f"{first.get('name', 'layer')}_input"
        layers.insert(0, {"class_name": "InputLayer",
                          "config": {"batch_shape": list(shape), "dtype": dtype, "name": name}})
        changed = True
    return changed


def wrapper_nested_config(model_config: Config) -> bool:
    """Layers nested in TimeDistributed/Bidirectional get the `module` Keras 3 needs to find their class."""
    changed = False
    for node in iter_layers(model_config):
        if node["class_name"] not in WRAPPERS:
            continue
        for key in ("layer", "backward_layer"):
            inner = node["config"].get(key)
            if isinstance(inner, dict) and "module" not in inner:
                inner["module"] = "keras.layers"
                inner["registered_name"] = None
                changed = True
    return changed


def initializer_dtype(model_config: Config) -> bool:
    """tf.keras 2.2.4 initializer configs carry `dtype`, which Keras 3 initializers reject."""
    changed = False
    for _, config in layer_configs(model_config):
        for key, value in config.items():
            if key.endswith("initializer") and isinstance(value, dict):
                inner = value.get("config")
                if isinstance(inner, dict) and "dtype" in inner:
                    del inner["dtype"]
                    changed = True
    return changed


def nested_model_single_io(model_config: Config) -> bool:
    """A nested Keras 2 model with one input/output lists it as `[[name, 0, 0]]`; Keras 3 then passes a list on."""
    changed = False
    for node in iter_layers(model_config):
        config = node.get("config")
        if node is model_config or node["class_name"] not in ("Model", "Functional") or not isinstance(config, dict):
            continue
        for key in ("input_layers", "output_layers"):
            value = config.get(key)
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list) \
                    and len(value[0]) == 3 and isinstance(value[0][0], str):
                config[key] = value[0]
                changed = True
    return changed


RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")


# Keras 3 drops the input mask when `initial_state` is passed; these subclasses keep it (see build.py).
STATE_MASK_PREFIX = "Keras2StateMask"


def _tensor_ref(entry: list[Any]) -> Config:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None], "dtype": "float32", "keras_history": list(entry[:3])}}


def rnn_initial_state(model_config: Config) -> bool:
    """Keras 2 stored `lstm([x, h, c])` as one node with 3 inputs; Keras 3 needs `initial_state=[h, c]` (mask kept)."""
    changed = False
    for node in iter_layers(model_config):
        if node["class_name"] not in RNN_CLASSES:
            continue
        nodes = node.get("inbound_nodes") or []
        for index, call in enumerate(nodes):
            if not (isinstance(call, list) and len(call) > 1 and all(isinstance(e, list) for e in call)):
                continue
            kwargs = dict(call[0][3]) if len(call[0]) > 3 else {}
            kwargs["initial_state"] = [_tensor_ref(entry) for entry in call[1:]]
            nodes[index] = {"args": [_tensor_ref(call[0])], "kwargs": kwargs}
            node["class_name"] = STATE_MASK_PREFIX + node["class_name"]
            changed = True
    return changed


# Arguments Keras 3 removed, with the only value that is safe to drop.
REMOVED_ARGUMENTS: dict[str, dict[str, Any]] = {
    "DepthwiseConv2D": {"groups": 1},
    "LSTM": {"time_major": False},
    "GRU": {"time_major": False},
    "SimpleRNN": {"time_major": False},
}


def removed_arguments(model_config: Config) -> bool:
    """Drop arguments Keras 3 removed (DepthwiseConv2D `groups`, RNN `time_major`) when they hold their no-op value."""
    changed = False
    for node in iter_layers(model_config):
        removed = REMOVED_ARGUMENTS.get(node["class_name"].removeprefix(STATE_MASK_PREFIX), {})
        config = node.get("config") or {}
        for argument, neutral in removed.items():
            if argument not in config:
                continue
            if config[argument] != neutral:
                raise UntranslatableConfig(f"layer {config.get('name')!r} ({node['class_name']}) uses "
                                f"{argument}={config[argument]!r}, which Keras 3 no longer supports")
            del config[argument]
            changed = True
    return changed


LEGACY_HARD_SIGMOID = "keras2_hard_sigmoid"


def hard_sigmoid_keras2(model_config: Config) -> bool:
    """Keras 2's hard_sigmoid is clip(0.2x+0.5); Keras 3's is relu6(x+3)/6: keep the Keras 2 formula."""
    changed = False
    for _, config in layer_configs(model_config):
        for key in ("activation", "recurrent_activation"):
            if config.get(key) == "hard_sigmoid":
                config[key] = LEGACY_HARD_SIGMOID
                changed = True
    return changed


RULES: tuple[tuple[str, Callable[[Config], bool]], ...] = (
    ("sequential_layer_list", sequential_layer_list),
    ("keras1_names", keras1_names),
    ("first_layer_batch_input_shape", first_layer_batch_input_shape),
    ("keras1_merge", keras1_merge),
    ("lambda_bytecode", lambda_bytecode),
    ("wrapper_nested_config", wrapper_nested_config),
    ("nested_model_single_io", nested_model_single_io),
    ("initializer_dtype", initializer_dtype),
    ("removed_arguments", removed_arguments),
    ("hard_sigmoid_keras2", hard_sigmoid_keras2),
    ("rnn_initial_state", rnn_initial_state),
)


# Rules that only apply to files saved by some Keras versions (None means Keras 1).
ERAS: dict[str, Callable[[str], bool]] = {
    "keras1_names": lambda version: version.startswith("1"),
    "hard_sigmoid_keras2": lambda version: not version.startswith("3"),
}


def translate(model_config: Config, keras_version: str | None) -> list[str]:
    """Apply every rule in order to `model_config` (in place); return the names of those that fired."""
    fired = []
    for name, rule in RULES:
        if name in ERAS and not ERAS[name](keras_version or "1"):
            continue
        if rule(model_config):
            fired.append(name)
    return fired
