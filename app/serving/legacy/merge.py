"""Rule `keras1_merge`: Keras 1 `Merge` layers become the Keras 3 layer that computes the same thing.

In a functional Keras 1 model a Merge is one node with several inputs: its class is swapped. In a
Keras 1 Sequential, a first layer `Merge(layers=[branch, ...])` joins whole Sequential branches:
the model becomes a functional one whose inputs are the branches' inputs, in their order. Its
weights are then loaded by layer name (`WEIGHTS_BY_NAME`), since branches of the same shape would
otherwise be told apart by their order alone.
"""
from __future__ import annotations

from app.errors import UntranslatableConfig
from app.serving.legacy.walk import Config, iter_layers

WEIGHTS_BY_NAME = "__load_weights_by_name__"  # a top-level mark for build.keras3_from_hdf5
MODES = {"sum": "Add", "mul": "Multiply", "ave": "Average", "max": "Maximum", "concat": "Concatenate"}
UNMAPPED = {"dot": "Keras 1 computes it with batch_dot, whose output shapes differ from Keras 3's Dot",
            "cos": "Keras 1's cosine mode has no Keras 3 layer"}


def merge_problem(node: Config) -> str | None:
    """Why a Merge layer config cannot be translated exactly (None when it can)."""
    config = node.get("config") if isinstance(node.get("config"), dict) else {}
    name, mode = config.get("name", "?"), config.get("mode", "sum")
    if config.get("mode_type", "raw") != "raw" or not isinstance(mode, str):
        return f"layer {name!r} is a Keras 1 'Merge' layer whose mode is stored Python code, which is not translated"
    if mode not in MODES:
        why = UNMAPPED.get(mode, "it is not a Keras 1 mode")
        return f"layer {name!r} is a Keras 1 'Merge' layer with mode {mode!r}, which is not translated: {why}"
    if any(config.get(key) not in (None, [], [0] * len(config.get(key) or []))
           for key in ("node_indices", "tensor_indices")):
        return f"layer {name!r} is a Keras 1 'Merge' layer joining other nodes than its inputs' first ones"
    return None


def merged_class(config: Config) -> tuple[str, Config]:
    """The Keras 3 class and config computing what the Merge config computes."""
    mode = config.get("mode", "sum")
    merged: Config = {"name": config["name"], "trainable": config.get("trainable", True)}
    if mode == "concat":
        merged["axis"] = config.get("concat_axis", -1)
    return MODES[mode], merged


def keras1_merge(model_config: Config) -> bool:
    """Merge layers become Concatenate/Add/Multiply/Average/Maximum; Sequentials of merged branches, functional."""
    changed = False
    for node in list(iter_layers(model_config)):
        if node["class_name"] == "Merge" and "inbound_nodes" in node:  # a functional Keras 1 model
            _refuse_if_problem(node)
            node["class_name"], node["config"] = merged_class(node["config"])
            changed = True
    for node in list(iter_layers(model_config)):
        layers = (node.get("config") or {}).get("layers") if node["class_name"] == "Sequential" else None
        if isinstance(layers, list) and layers and layers[0].get("class_name") == "Merge":
            _to_functional(node)
            model_config[WEIGHTS_BY_NAME] = True
            changed = True
    return changed


def _refuse_if_problem(node: Config) -> None:
    problem = merge_problem(node)
    if problem:
        raise UntranslatableConfig(problem)


def _to_functional(sequential: Config) -> None:
    """Rewrite a Sequential whose first layer merges Sequential branches as a functional model, in place."""
    layers: list[Config] = []
    inputs: list[str] = []
    output = _chain(sequential["config"]["layers"], layers, inputs)
    sequential["class_name"] = "Functional"
    sequential["config"] = {"name": sequential["config"].get("name", "model"), "layers": layers,
                            "input_layers": [[name, 0, 0] for name in inputs], "output_layers": [[output, 0, 0]]}


def _chain(chain: list[Config], layers: list[Config], inputs: list[str]) -> str:
    """Append the functional layer entries of a Sequential's `chain`; the name of its last layer."""
    first, rest = chain[0], chain[1:]
    config = first.get("config") or {}
    if first["class_name"] == "Merge":
        _refuse_if_problem(first)
        outputs = []
        for branch in config.get("layers") or []:
            branch_layers = (branch.get("config") or {}).get("layers")
            if branch.get("class_name") != "Sequential" or not branch_layers:
                raise UntranslatableConfig(f"layer {config.get('name')!r} is a Keras 1 'Merge' of a "
                                           f"{branch.get('class_name')!r} branch; only Sequential branches translate")
            outputs.append(_chain(branch_layers, layers, inputs))
        class_name, merged = merged_class(config)
        previous = _entry(layers, class_name, merged, outputs)
    elif first["class_name"] == "InputLayer":
        previous = _entry(layers, "InputLayer", config, [])
        inputs.append(previous)
    else:
        raise UntranslatableConfig(f"a branch of a Keras 1 'Merge' starts with {config.get('name')!r}, "
                                   "which declares no input shape")
    for layer in rest:
        if layer["class_name"] == "Merge":
            raise UntranslatableConfig(f"layer {layer['config'].get('name')!r} is a Keras 1 'Merge' layer that is "
                                       "not the first layer of its Sequential")
        previous = _entry(layers, layer["class_name"], layer["config"], [previous], layer)
    return previous


def _entry(layers: list[Config], class_name: str, config: Config, inbound: list[str],
           original: Config | None = None) -> str:
    """Append one functional layer entry called on the outputs of the layers named `inbound`."""
    entry = {key: value for key, value in (original or {}).items() if key not in ("class_name", "config")}
    entry.update({"class_name": class_name, "name": config["name"], "config": config,
                  "inbound_nodes": [[[name, 0, 0, {}] for name in inbound]] if inbound else []})
    layers.append(entry)
    return config["name"]
