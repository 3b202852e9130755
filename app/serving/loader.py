"""The loader's first step: read a model file into a Keras model and its signature.

This is the only module (with `app.serving.legacy`) that knows Keras file formats; every
reason a file cannot be served is an `app.errors.LoadError`. Strategy:
1. sniff the content (HDF5, Keras 3 zip, SavedModel, pickle, other) and read the stored config;
2. refuse what must not run (Keras 1 Merge, Lambda layers in safe mode, foreign bytecode);
3. Keras 3: a `.keras` zip natively; an HDF5 config after the named translation rules
   of `app.serving.legacy.rules` (none fire for files Keras 3 reads natively), then the stored weights;
4. the `tf_keras` package (legacy Keras 2) as the fallback for HDF5 files Keras 3 cannot build.
Custom code comes only from the operator's `custom_objects.py`, imported only by opt-in
(SERVING_ALLOW_CUSTOM_CODE=true, or the check command's `--custom-objects FILE`).
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from app.errors import LoadError, one_line  # noqa: E402
from app.serving.legacy import build  # noqa: E402
from app.serving.legacy.checks import check_config  # noqa: E402
from app.serving.legacy.files import StoredModel, read_stored_model, sniff_format  # noqa: E402,F401
from app.serving.legacy.rules import translate  # noqa: E402
from app.serving.types import ModelSource, Signature, TensorSpec  # noqa: E402

log = logging.getLogger(__name__)

UNKNOWN_CLASS = re.compile(r"(?:Unknown layer|Could not locate class|Unknown object)[^']*'([^']+)'")


@dataclass(frozen=True)
class LoadedModel:
    """A model read from disk, with what the manager reports about it."""

    model: Any
    signature: Signature
    file_format: str  # "hdf5" or "keras_zip"
    loaded_by: str  # "keras3", "keras3+translated(rule,...)" or "tf_keras"
    keras_version: str | None = None
    backend: str | None = None


def load_model_file(source: ModelSource) -> LoadedModel:
    """Load `source.path`; raise a LoadError with a one-line reason when it cannot be served."""
    path = source.path
    if path is None or not path.exists():
        raise LoadError(f"model file {path.name if path else None} does not exist")
    try:
        stored = read_stored_model(path)
    except (OSError, ValueError) as exc:
        raise LoadError(f"cannot read {path.name}: {one_line(exc)}") from None
    custom_objects = load_custom_objects(source.custom_objects_path, source.allow_custom_code)
    check_config(stored.model_config, source.safe_mode, stored.keras_version)
    model, loaded_by = _load(path, stored, custom_objects, source.safe_mode)
    return LoadedModel(model=model, signature=describe_signature(model), file_format=stored.file_format,
                       loaded_by=loaded_by, keras_version=stored.keras_version, backend=stored.backend)


def _load(path: Path, stored: StoredModel, custom_objects: dict[str, Any], safe_mode: bool) -> tuple[Any, str]:
    """Keras 3 (translated when needed), then tf_keras for HDF5; the model and the path that read it."""
    if stored.file_format == "keras_zip":
        try:
            return build.keras3_from_zip(path, custom_objects, safe_mode), "keras3"
        except Exception as exc:  # noqa: BLE001 - every cause becomes a reason
            raise LoadError(_explain([exc])) from None
    errors: list[BaseException] = []
    config = copy.deepcopy(stored.model_config)
    try:
        fired = translate(config, stored.keras_version)
        model = build.keras3_from_hdf5(path, config, custom_objects, safe_mode)
        return model, f"keras3+translated({','.join(fired)})" if fired else "keras3"
    except Exception as exc:  # noqa: BLE001 - fall back to tf_keras
        log.info("%s: Keras 3 cannot build it (%s); trying tf_keras", path.name, one_line(exc))
        errors.append(exc)
    try:
        return build.tf_keras_from_hdf5(path, custom_objects, safe_mode), "tf_keras"
    except Exception as exc:  # noqa: BLE001 - every cause becomes a reason
        errors.append(exc)
    raise LoadError(_explain(errors))


def load_custom_objects(module_path: Path | None, allowed: bool) -> dict[str, Any]:
    """`CUSTOM_OBJECTS` from the operator's custom_objects.py, imported and run only when `allowed` (the opt-in)."""
    if module_path is None or not module_path.is_file():
        return {}
    if not allowed:
        raise LoadError(f"{module_path.name} is custom code and is not imported: set SERVING_ALLOW_CUSTOM_CODE=true "
                        "to run it (trusted code only; the check command: --custom-objects FILE)")
    digest = hashlib.sha1(str(module_path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"serving_custom_objects_{digest}", module_path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the operator's code failed
        raise LoadError(f"{module_path.name} failed to import: {one_line(exc)}") from None
    objects = getattr(module, "CUSTOM_OBJECTS", None)
    if not isinstance(objects, dict):
        raise LoadError(f"{module_path.name} must define CUSTOM_OBJECTS = {{'Name': class_or_function}}")
    return dict(objects)


def _explain(errors: list[BaseException]) -> str:
    """One line naming the cause, the most specific error first."""
    for exc in errors:
        match = UNKNOWN_CLASS.search(str(exc))
        if match:
            name = match.group(1)
            return (f"unknown layer class {name!r}: it is not part of Keras; place its code in "
                    f"custom_objects.py next to the model (CUSTOM_OBJECTS = {{{name!r}: ...}})")
    if len(errors) == 1:
        return one_line(errors[0])
    return f"Keras 3 cannot load it ({one_line(errors[0], 160)}); tf_keras neither ({one_line(errors[-1], 120)})"


def describe_signature(model: Any) -> Signature:
    """Input and output specs of a loaded Keras 3 or tf_keras model, in the model's call order."""
    if type(model).__module__.startswith("tf_keras"):
        inputs = [_spec(name, t) for name, t in zip(_unique(list(model.input_names)), model.inputs)]
        outputs = [_spec(name, t) for name, t in zip(_unique(list(model.output_names)), model.outputs)]
        return Signature(inputs=tuple(inputs), outputs=tuple(outputs))
    input_struct = built_structure(model, "input")
    if isinstance(input_struct, dict):
        inputs = [_spec(key, tensor) for key, tensor in input_struct.items()]
    else:
        inputs = [_spec(_tensor_name(t), t) for t in model.inputs]
    output_struct = built_structure(model, "output")
    if isinstance(output_struct, dict):
        outputs = [_spec(key, output_struct[key]) for key in sorted(output_struct)]
    else:
        names = list(getattr(model, "output_names", None) or [model.layers[-1].name])
        outputs = [_spec(name, t) for name, t in zip(_unique(names), model.outputs)]
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs))


def built_structure(model: Any, side: str) -> Any:
    """The model's public `input` or `output` (`side`): the dict, list or tensor it was built with.

    A Keras 3 Functional model answers with its build structure; a Sequential one may raise
    (AttributeError or ValueError: never called), then None and the flat `inputs` list is used."""
    try:
        return getattr(model, side)
    except (AttributeError, ValueError):
        return None


def _spec(name: str, tensor: Any) -> TensorSpec:
    shape = tuple(None if d is None else int(d) for d in tensor.shape)
    return TensorSpec(name=name, dtype=str(getattr(tensor.dtype, "name", tensor.dtype)), shape=shape)


def _tensor_name(tensor: Any) -> str:
    history = getattr(tensor, "_keras_history", None)
    if history is not None:
        return history[0].name
    return tensor.name


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        unique.append(name if count == 0 else f"{name}_{count}")
        seen[name] = count + 1
    return unique
