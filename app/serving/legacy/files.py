"""Read what a model file is by its content, and its stored config, without building a model."""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import NotAModel, one_line

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class StoredModel:
    """What a file says about itself: format, decoded model config, saving Keras version and backend."""

    file_format: str  # "hdf5" or "keras_zip"
    model_config: dict[str, Any]
    keras_version: str | None
    backend: str | None


def sniff_format(path: Path) -> str:
    """The real format from the content: savedmodel, hdf5, keras_zip, pickle or unknown."""
    if path.is_dir():
        return "savedmodel" if any((path / n).is_file() for n in ("saved_model.pb", "saved_model.pbtxt")) else "unknown"
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(ZIP_MAGIC):
        return "keras_zip"
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def read_stored_model(path: Path) -> StoredModel:
    """The stored config of an HDF5 or Keras 3 zip file; raise NotAModel with a precise reason."""
    file_format = sniff_format(path)
    if file_format == "savedmodel":
        raise NotAModel(f"{path.name} is a TensorFlow SavedModel folder, not a Keras .h5/.keras file; "
                        "re-save it with model.save('model.keras')")
    if file_format == "pickle":
        raise NotAModel(f"{path.name} is a Python pickle, not a Keras file")
    if file_format == "unknown":
        raise NotAModel(f"{path.name} is not a Keras file (neither HDF5 nor a Keras 3 zip archive)")
    if file_format == "hdf5":
        return _read_hdf5(path)
    return _read_zip(path)


def _read_hdf5(path: Path) -> StoredModel:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        text = str(exc)
        if "truncated" in text:
            raise NotAModel(f"{path.name} is a truncated HDF5 file ({_size_note(text)}); "
                            "the download or copy was incomplete") from None
        raise NotAModel(f"{path.name} is a corrupt HDF5 file: {one_line(text, 150)}") from None
    with handle:
        attrs = handle.attrs
        raw = attrs.get("model_config")
        weights = handle.get("model_weights", handle)
        keras_version = _text(attrs.get("keras_version") or weights.attrs.get("keras_version"))
        backend = _text(attrs.get("backend") or weights.attrs.get("backend"))
        if raw is None:
            if "layer_names" in weights.attrs or _keras3_weights(handle):
                raise NotAModel(f"{path.name} holds weights only (saved by save_weights): "
                                "there is no model config, so the architecture is missing")
            raise NotAModel(f"{path.name} is an HDF5 file without a Keras model config")
        config = json.loads(_text(raw))
    return StoredModel("hdf5", config, keras_version, backend)


def _read_zip(path: Path) -> StoredModel:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise NotAModel(f"{path.name} is a zip archive without config.json, not a Keras 3 file")
            config = json.loads(archive.read("config.json"))
            meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
    except zipfile.BadZipFile as exc:
        raise NotAModel(f"{path.name} is a truncated or corrupt zip archive: {exc}") from None
    return StoredModel("keras_zip", config, meta.get("keras_version"), meta.get("backend"))


def _keras3_weights(handle: Any) -> bool:
    """Whether an HDF5 file has the layout of Keras 3's `save_weights("x.weights.h5")` (`layers/` and `vars/`)."""
    return "vars" in handle and "layers" in handle


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _size_note(text: str) -> str:
    eof, stored = re.search(r"\beof = (\d+)", text), re.search(r"stored_eof = (\d+)", text)
    return f"{eof.group(1)} of {stored.group(1)} bytes" if eof and stored else "shorter than its header says"
