"""The files of model control across gunicorn's workers, in the runtime folder the master makes.

- `control.json`: what the API last asked for, `{"generation": N, "models": {"NAME": {"unloaded": bool,
  "config": {...} | null}}}`. Written by the worker that took a load or unload, under an fcntl lock on
  `control.lock` (workers are processes; the lock also orders threads), atomically (a temporary file,
  then `os.replace`): a reader never sees half a file, and takes no lock. A worker started later reads
  it at start, so it comes up in the state the API last set.
- `results/<pid>.json`: what one worker made of a generation, `{"generation": N, "models": {"NAME":
  {"VERSION": {"state": ..., "error": ...}}}}`, written (atomically) before it publishes that generation
  in its readiness slot, so a reader that saw the slot finds the file.

The master makes the folder in `on_starting` (SERVING_RUNTIME_DIR, emptied, or a new folder in /dev/shm
or the temp folder, set in the environment the workers inherit) and removes a folder it made on exit.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.serving.model_settings import ModelSettings
from app.serving.version_policy import ModelOverride

VARIABLE = "SERVING_RUNTIME_DIR"
CONTROL, LOCK, RESULTS = "control.json", "control.lock", "results"
_made: list[Path] = []


@dataclass(frozen=True)
class ControlState:
    """The control file: its generation and, per model, {"unloaded": bool, "config": dict | None}."""

    generation: int = 0
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def overrides(self) -> dict[str, ModelOverride]:
        """The models' overrides, typed (each config was validated before it was written)."""
        return {name: ModelOverride(bool(entry.get("unloaded")),
                                    None if entry.get("config") is None
                                    else ModelSettings.model_validate(entry["config"]))
                for name, entry in self.models.items()}


def prepare_runtime() -> Path:
    """(Master, at start.) The runtime folder, set in the environment the workers inherit, with no state."""
    given = os.environ.get(VARIABLE)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (folder / CONTROL).unlink()
        shutil.rmtree(folder / RESULTS, ignore_errors=True)
    else:
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        folder = Path(tempfile.mkdtemp(prefix="keras-serve-runtime-", dir=shm))
        _made.append(folder)
    (folder / RESULTS).mkdir(exist_ok=True)
    os.environ[VARIABLE] = str(folder)
    return folder


def remove_made_runtime() -> None:
    """(Master, at exit.) Remove the folder `prepare_runtime` made (not one the operator named)."""
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)


def forget_worker(pid: int) -> None:
    """(Master, a worker exited.) Remove its results file."""
    folder = os.environ.get(VARIABLE)
    if folder:
        with contextlib.suppress(OSError):
            (Path(folder) / RESULTS / f"{pid}.json").unlink()


def read_state(runtime: Path | None) -> ControlState:
    """The control file (none, or no runtime folder: generation 0, no override)."""
    raw = _read(runtime / CONTROL) if runtime is not None else None
    if raw is None:
        return ControlState()
    return ControlState(int(raw.get("generation", 0)), dict(raw.get("models", {})))


def update_state(runtime: Path, change: Callable[[dict[str, Any]], None],
                 published: Callable[[int], None]) -> ControlState:
    """Under the lock: read the file, let `change` edit its models, write it with the next generation,
    then call `published(generation)` (still under the lock, so generations reach workers in order)."""
    with _locked(runtime):
        current = read_state(runtime)
        models = {name: dict(entry) for name, entry in current.models.items()}
        change(models)
        state = ControlState(current.generation + 1, models)
        _write(runtime / CONTROL, {"generation": state.generation, "models": models})
        published(state.generation)
        return state


def write_result(runtime: Path, pid: int, generation: int, models: Mapping[str, Any]) -> None:
    """One worker's outcome of `generation` (written before it publishes the generation)."""
    _write(runtime / RESULTS / f"{pid}.json", {"generation": generation, "models": models})


def read_result(runtime: Path, pid: int) -> dict[str, Any] | None:
    """One worker's last outcome, None when it has written none."""
    return _read(runtime / RESULTS / f"{pid}.json")


@contextlib.contextmanager
def _locked(runtime: Path) -> Iterator[None]:
    with open(runtime / LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(document, out)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _read(path: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return raw if isinstance(raw, dict) else None
