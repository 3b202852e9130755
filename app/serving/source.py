"""The source: scan the model folder and decide which versions should be served.

Layout (names match `[A-Za-z0-9_.-]+`):
- `NAME.h5`, `NAME.keras` or `NAME.tflite`: version 1 of NAME; settings in `NAME.serving.json`,
  custom code in `NAME.custom_objects.py`.
- `NAME/VERSION/<one .h5, .keras or .tflite file>`, VERSION a positive integer; settings in
  `NAME/serving.json`, custom code in `NAME/custom_objects.py`.
All versions found are aspired. Layout problems become versions with `problem` set,
which the registry reports as FAILED instead of refusing to start.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from app.errors import ConfigError
from app.serving.model_settings import ModelSettings, batching_settings, model_runtime, read_model_settings
from app.serving.types import ModelSource
from app.settings import Settings

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".h5", ".keras", ".hdf5", ".tflite")  # .tflite runs on LiteRT, without TensorFlow
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
VERSION_PATTERN = re.compile(r"^[1-9][0-9]*$")


def check_model_dir(model_dir: Path) -> None:
    """ConfigError naming SERVING_MODEL_DIR unless it is a folder this process can list."""
    if not model_dir.is_dir():
        problem = "does not exist" if not model_dir.exists() else "is not a folder"
        raise ConfigError(f"SERVING_MODEL_DIR={str(model_dir)!r} {problem}")
    try:
        next(model_dir.iterdir(), None)
    except OSError as exc:
        raise ConfigError(f"SERVING_MODEL_DIR={str(model_dir)!r} cannot be read: {exc.strerror}") from None


def scan_source(model_dir: Path, settings: Settings) -> list[ModelSource]:
    """Every aspired version under `model_dir`, sorted by name then version (none when it is missing:
    gunicorn's master refuses to start then, `check_model_dir`; readiness says no model is served)."""
    if not model_dir.is_dir():
        log.warning("model folder %s does not exist; serving no models", model_dir)
        return []
    sources: dict[str, list[ModelSource]] = {}
    for entry in sorted(model_dir.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix in MODEL_SUFFIXES:
            name = entry.name[: -len(entry.suffix)]
            found = [_flat_source(entry, name, settings)]
        elif entry.is_dir():
            name = entry.name
            found = _folder_sources(entry, settings)
        else:
            continue
        if not NAME_PATTERN.match(name):
            log.warning("skipping %s: model names must match %s", entry, NAME_PATTERN.pattern)
            continue
        if name in sources and found:
            clash = f"model {name!r} is defined twice ({entry.name} and another file or folder)"
            found = [_failed(name, s.version, settings, clash) for s in found]
            sources[name] = [_failed(name, s.version, settings, clash) for s in sources[name]]
        sources.setdefault(name, []).extend(found)
    return [s for name in sorted(sources) for s in sorted(sources[name], key=lambda s: s.version)]


def _flat_source(path: Path, name: str, settings: Settings) -> ModelSource:
    settings_path = path.with_name(f"{name}.serving.json")
    custom = path.with_name(f"{name}.custom_objects.py")
    return _source(name, 1, path, settings, settings_path, custom)


def _folder_sources(folder: Path, settings: Settings) -> list[ModelSource]:
    name = folder.name
    settings_path = folder / "serving.json"
    custom = folder / "custom_objects.py"
    found = []
    for child in sorted(folder.iterdir()):
        if not (child.is_dir() and VERSION_PATTERN.match(child.name)):
            continue
        files = sorted(p for p in child.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
        version = int(child.name)
        if len(files) == 1:
            found.append(_source(name, version, files[0], settings, settings_path, custom))
        elif not files:
            found.append(_failed(name, version, settings,
                                 f"{name}/{child.name}/ holds no .h5 or .keras file, nor a .tflite one"))
        else:
            listed = ", ".join(p.name for p in files)
            found.append(_failed(name, version, settings,
                                 f"{name}/{child.name}/ holds several model files ({listed}); keep one"))
    return found


def _source(name: str, version: int, path: Path, settings: Settings,
            settings_path: Path, custom: Path) -> ModelSource:
    try:
        model = read_model_settings(settings_path)
    except ValueError as exc:
        return _failed(name, version, settings, str(exc), path=path)
    return ModelSource(
        name=name,
        version=version,
        path=path,
        batching=batching_settings(settings, model),
        safe_mode=model.safe_mode,
        runtime=model_runtime(settings, model),
        custom_objects_path=custom if custom.is_file() else None,
        allow_custom_code=settings.allow_custom_code,
        config_path=settings_path if settings_path.is_file() else None,
    )


def _failed(name: str, version: int, settings: Settings, problem: str,
            path: Path | None = None) -> ModelSource:
    return ModelSource(name=name, version=version, path=path,
                       batching=batching_settings(settings, ModelSettings()), problem=problem)
