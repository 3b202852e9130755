"""The source: scan the model folder and decide which versions should be served.

Layout (names match `[A-Za-z0-9_.-]+`):
- `NAME.h5`, `NAME.keras` or `NAME.tflite`: version 1 of NAME; settings in `NAME.serving.json`,
  custom code in `NAME.custom_objects.py`.
- `NAME/VERSION/<one .h5, .keras or .tflite file>`, VERSION a positive integer; settings in
  `NAME/serving.json`, custom code in `NAME/custom_objects.py`.
The model's `version_policy` decides which versions found are aspired (default: all); the others are
planned as not aspired. Layout problems become versions with `problem` set, which the registry reports
as FAILED instead of refusing to start.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.errors import ConfigError
from app.serving.model_settings import ModelSettings, batching_settings, model_runtime, read_model_settings
from app.serving.publishing import PublishingCheck, stamp_of
from app.serving.types import ModelPlan, ModelSource
from app.serving.version_policy import UNLOADED, ModelOverride, aspired_versions, missing_versions
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


@dataclass(frozen=True)
class _Found:
    """One version folder (or flat file) as found: its model file, what the copy check watches, its problem."""

    version: int
    path: Path | None
    stamp: Path
    problem: str | None = None
    settled: tuple[int, int] | None = None  # the watched file's (size, mtime_ns) when it last settled


@dataclass
class _Model:
    """One model as found on disk: where its settings and custom code would be, and its versions."""

    settings_path: Path
    custom: Path
    versions: list[_Found] = field(default_factory=list)
    problem: str | None = None  # the whole model is wrong (defined twice)


def scan_source(model_dir: Path, settings: Settings) -> list[ModelSource]:
    """Every aspired version under `model_dir`, sorted by name then version (none when it is missing:
    gunicorn's master refuses to start then, `check_model_dir`; readiness says no model is served)."""
    return [source for plan in plan_models(model_dir, settings).values() for source in plan.versions]


def plan_models(model_dir: Path, settings: Settings, overrides: Mapping[str, ModelOverride] | None = None,
                stable: PublishingCheck | None = None) -> dict[str, ModelPlan]:
    """Each model under `model_dir` (by name, sorted): its aspired versions under its version policy, the
    versions it does not aspire and why, its labels and default version; a model with no version found is
    left out. `overrides` come from the control API; `stable` (the watcher's) leaves out versions whose
    file is still being copied (app.serving.publishing)."""
    models = _find_models(model_dir)
    watched = [found.stamp for model in models.values() for found in model.versions]
    published = stable.published(watched) if stable is not None else {path: stamp_of(path) for path in watched}
    for model in models.values():
        model.versions = [replace(found, settled=published[found.stamp]) for found in model.versions
                          if found.stamp in published]
    overrides = overrides or {}
    return {name: _plan(name, model, settings, overrides.get(name))
            for name, model in sorted(models.items()) if model.versions}  # a model with no version is no model


def _plan(name: str, model: _Model, settings: Settings, override: ModelOverride | None) -> ModelPlan:
    config = override.config if override is not None else None
    unloaded = override is not None and override.unloaded
    try:
        document = config if config is not None else read_model_settings(model.settings_path)
    except ValueError as exc:  # an invalid serving.json: every version FAILED with the reason, as before
        if unloaded:
            return ModelPlan(name, (), tuple((f.version, UNLOADED) for f in model.versions))
        return ModelPlan(name, tuple(_failed(name, f.version, settings, model.problem or f.problem or str(exc),
                                             path=f.path) for f in model.versions))
    settings_path = None if config is not None else model.settings_path
    found = {f.version: f for f in model.versions}
    policy = document.version_policy
    if model.problem is not None:
        aspired, not_aspired = sorted(found), []
    else:
        aspired, not_aspired = aspired_versions(policy, found)
        if missing := missing_versions(policy, found):
            _log_once(name, f"model {name}: versions {missing} of its version policy {policy} are not on disk")
    if unloaded:
        aspired, not_aspired = [], [(version, UNLOADED) for version in sorted(found)]
    versions = tuple(_source(name, found[v], settings, document, settings_path, model) for v in aspired)
    return ModelPlan(name, versions, tuple(not_aspired), dict(document.labels), document.default_version)


def _find_models(model_dir: Path) -> dict[str, _Model]:
    if not model_dir.is_dir():
        log.warning("model folder %s does not exist; serving no models", model_dir)
        return {}
    models: dict[str, _Model] = {}
    for entry in sorted(model_dir.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix in MODEL_SUFFIXES:
            name = entry.name[: -len(entry.suffix)]
            model = _Model(entry.with_name(f"{name}.serving.json"), entry.with_name(f"{name}.custom_objects.py"),
                           [_Found(1, entry, entry)])
        elif entry.is_dir():
            name = entry.name
            model = _Model(entry / "serving.json", entry / "custom_objects.py", _folder_versions(entry))
        else:
            continue
        if not NAME_PATTERN.match(name):
            log.warning("skipping %s: model names must match %s", entry, NAME_PATTERN.pattern)
            continue
        if name in models and model.versions:
            first = models[name]
            first.problem = f"model {name!r} is defined twice ({entry.name} and another file or folder)"
            known = {f.version for f in first.versions}
            first.versions = sorted(first.versions + [f for f in model.versions if f.version not in known],
                                    key=lambda f: f.version)
        else:
            models.setdefault(name, model)
    return models


def _folder_versions(folder: Path) -> list[_Found]:
    name = folder.name
    found = []
    for child in sorted(folder.iterdir()):
        if not (child.is_dir() and VERSION_PATTERN.match(child.name)):
            continue
        files = sorted(p for p in child.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
        version = int(child.name)
        if len(files) == 1:
            found.append(_Found(version, files[0], files[0]))
        elif not files:
            found.append(_Found(version, None, child,
                                f"{name}/{child.name}/ holds no .h5 or .keras file, nor a .tflite one"))
        else:
            listed = ", ".join(p.name for p in files)
            found.append(_Found(version, None, child,
                                f"{name}/{child.name}/ holds several model files ({listed}); keep one"))
    return sorted(found, key=lambda f: f.version)


def _source(name: str, found: _Found, settings: Settings, model: ModelSettings,
            settings_path: Path | None, where: _Model) -> ModelSource:
    problem = where.problem or found.problem
    if problem is not None:
        return _failed(name, found.version, settings, problem)
    return ModelSource(
        name=name,
        version=found.version,
        path=found.path,
        batching=batching_settings(settings, model),
        safe_mode=model.safe_mode,
        runtime=model_runtime(settings, model),
        custom_objects_path=where.custom if where.custom.is_file() else None,
        allow_custom_code=settings.allow_custom_code,
        config_path=settings_path if settings_path is not None and settings_path.is_file() else None,
        file_stamp=found.settled,
    )


def _failed(name: str, version: int, settings: Settings, problem: str,
            path: Path | None = None) -> ModelSource:
    return ModelSource(name=name, version=version, path=path,
                       batching=batching_settings(settings, ModelSettings()), problem=problem)


def _log_once(key: str, message: str) -> None:
    if _logged.get(key) != message:
        _logged[key] = message
        log.warning(message)


_logged: dict[str, str] = {}  # model -> the last warning about its policy, so that each poll does not repeat it
