"""Rule `keras1_names`: Keras 1 layer classes and arguments renamed to their Keras 2/3 names."""
from __future__ import annotations

from app.errors import UntranslatableConfig
from app.serving.legacy.walk import Config, layer_configs

# Keras 1 layer names and arguments that map one to one onto Keras 2/3 ones.
KERAS1_CLASSES = {"Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
                  "AtrousConvolution2D": "Conv2D", "Deconvolution2D": "Conv2DTranspose"}
KERAS1_ARGUMENTS = {"output_dim": "units", "nb_filter": "filters", "subsample": "strides",
                    "subsample_length": "strides", "border_mode": "padding", "init": "kernel_initializer",
                    "bias": "use_bias", "filter_length": "kernel_size", "pool_length": "pool_size",
                    "stride": "strides", "atrous_rate": "dilation_rate", "p": "rate"}
# Per-class exceptions (None: keep the argument as it is).
KERAS1_PER_CLASS: dict[str, dict[str, str | None]] = {
    "Embedding": {"output_dim": None, "init": "embeddings_initializer"},
}
KERAS1_DROPPED = ("W_regularizer", "b_regularizer", "W_constraint", "b_constraint", "input_dtype",
                  "inner_init", "consume_less", "U_regularizer", "dropout_W", "dropout_U")


def keras1_names(model_config: Config) -> bool:
    """Keras 1 layer classes and arguments (Convolution2D, nb_filter, border_mode, ...) take their Keras 2 names."""
    changed = False
    for node, config in layer_configs(model_config):
        legacy = node["class_name"] in KERAS1_CLASSES or any(
            key in config for key in ("nb_row", "output_dim", "border_mode", "nb_filter", "init")) or (
            node["class_name"] in ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")
            and "p" in config)
        if not legacy:
            continue
        node["class_name"] = KERAS1_CLASSES.get(node["class_name"], node["class_name"])
        if "nb_row" in config:
            config["kernel_size"] = [config.pop("nb_row"), config.pop("nb_col")]
        if config.pop("dim_ordering", "tf") == "th":
            raise UntranslatableConfig(f"layer {config.get('name')!r} uses Keras 1 Theano dimension ordering, "
                            "whose kernels are not translated")
        renames = {**KERAS1_ARGUMENTS, **KERAS1_PER_CLASS.get(node["class_name"], {})}
        for old, new in renames.items():
            if old in config and new is not None:
                config[new] = config.pop(old)
        for old in KERAS1_DROPPED:
            config.pop(old, None)
        changed = True
    return changed
