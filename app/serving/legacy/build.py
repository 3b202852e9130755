"""Build models with Keras 3 (from a translated HDF5 config) or with tf_keras (the fallback)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from app.serving.legacy.lambda_translate import TRANSLATED_CLASS
from app.serving.legacy.merge import WEIGHTS_BY_NAME
from app.serving.legacy.rules import LEGACY_HARD_SIGMOID, RNN_CLASSES, STATE_MASK_PREFIX


def keras2_hard_sigmoid(x: Any) -> Any:
    """Keras 2's hard_sigmoid: clip(0.2 * x + 0.5, 0, 1)."""
    from keras import ops

    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def state_mask_classes() -> dict[str, type]:
    """RNN subclasses that pass the sequence's mask along when called with `initial_state` (as Keras 2 did)."""
    import keras
    from keras.src.backend import get_keras_mask

    def make(base: type) -> type:
        def __call__(self: Any, sequences: Any, initial_state: Any = None, mask: Any = None, **kwargs: Any) -> Any:
            if mask is None and initial_state is not None:
                mask = get_keras_mask(sequences)
            return base.__call__(self, sequences, initial_state=initial_state, mask=mask, **kwargs)

        return type(STATE_MASK_PREFIX + base.__name__, (base,), {"__call__": __call__})

    return {STATE_MASK_PREFIX + name: make(getattr(keras.layers, name))
            for name in RNN_CLASSES if hasattr(keras.layers, name) and name != "RNN"}


def keras3_from_hdf5(path: Path, model_config: dict[str, Any], custom_objects: dict[str, Any],
                     safe_mode: bool) -> Any:
    """Keras 3 model from a (translated) HDF5 config, then the file's stored weights, exactly as Keras 3 does."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format, saving_options, saving_utils
    from keras.src.saving import serialization_lib

    from app.serving.legacy.lambda_layer import TranslatedLambda

    by_name = bool(model_config.pop(WEIGHTS_BY_NAME, False))
    objects = {LEGACY_HARD_SIGMOID: keras2_hard_sigmoid, TRANSLATED_CLASS: TranslatedLambda, **state_mask_classes(),
               **custom_objects}
    with h5py.File(path, "r") as handle, warnings.catch_warnings(), keras.saving.custom_object_scope(objects), \
            saving_options.keras_option_scope(use_legacy_config=True), \
            serialization_lib.SafeModeScope(safe_mode):
        warnings.simplefilter("ignore")  # legacy-argument chatter; the outcome is what matters
        model = saving_utils.model_from_config(model_config, custom_objects=objects)
        if by_name:
            _load_weights_by_name(handle["model_weights"], model)
        else:
            legacy_h5_format.load_weights_from_hdf5_group(handle["model_weights"], model)
    return model


def _load_weights_by_name(group: Any, model: Any) -> None:
    """Every layer's stored weights by its name; each side's weighted layers must be exactly the other's."""
    from keras.src.legacy.saving import legacy_h5_format

    stored = {name.decode() if isinstance(name, bytes) else str(name) for name in group.attrs["layer_names"]}
    stored = {name for name in stored if len(group[name].attrs.get("weight_names", [])) > 0}
    weighted = {layer.name for layer in model.layers if layer.weights}
    if stored != weighted:
        raise ValueError(f"the file's weighted layers {sorted(stored ^ weighted)} do not match the model's")
    legacy_h5_format.load_weights_from_hdf5_group_by_name(group, model, skip_mismatch=False)


def keras3_from_zip(path: Path, custom_objects: dict[str, Any], safe_mode: bool) -> Any:
    """Keras 3's own loader for a .keras zip archive."""
    import keras

    return keras.saving.load_model(path, custom_objects=custom_objects or None, compile=False,
                                   safe_mode=safe_mode)


def tf_keras_from_hdf5(path: Path, custom_objects: dict[str, Any], safe_mode: bool) -> Any:
    """The tf_keras package (legacy Keras 2) reading an HDF5 file, whatever its name."""
    import h5py
    import tf_keras
    from tf_keras.src.saving import serialization_lib

    # tf_keras applies safe mode to .keras archives only: the scope makes it refuse an HDF5 file's Lambda too
    with h5py.File(path, "r") as handle, warnings.catch_warnings(), serialization_lib.SafeModeScope(safe_mode):
        warnings.simplefilter("ignore")
        return tf_keras.models.load_model(handle, custom_objects=custom_objects or None, compile=False,
                                          safe_mode=safe_mode)
