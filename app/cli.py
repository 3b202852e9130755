"""`flask --app wsgi models check PATH...`: will my file serve? (also `python -m app.cli check PATH...`).

Each PATH is loaded exactly as the server loads a model version (load_model_file, CompiledModel,
warm_up, choose_runtime); the model folder is not needed. Settings and custom code
next to the file are honoured like in the model folder: `NAME.serving.json` / `NAME.custom_objects.py`
beside `NAME.h5`, or `serving.json` / `custom_objects.py` in `NAME/` for `NAME/VERSION/file`.
"""
from __future__ import annotations

import time
from pathlib import Path

import click

from app.serving.types import BatchingSettings, ModelSource

CHECK_BATCHING = BatchingSettings(max_batch_size=1, max_batch_delay_ms=0, max_queue_rows=1, request_timeout=1)


@click.group("models", help="Inspect model files.")
def models_cli() -> None:
    """Commands about model files."""


def _beside(path: Path, name: str, folder_name: str) -> Path | None:
    """A settings or code file next to `path` (flat layout) or in its model folder (versioned layout)."""
    flat = path.with_name(f"{path.stem}.{name}")
    if flat.is_file():
        return flat
    folder = path.parent.parent / folder_name
    return folder if path.parent.name.isdigit() and folder.is_file() else None


def source_for(path: Path, custom_objects: Path | None = None, safe_mode: bool | None = None) -> ModelSource:
    """The ModelSource the repository would build for `path`, with command-line overrides."""
    from app.serving.model_config import read_model_config

    settings = _beside(path, "serving.json", "serving.json")
    overrides = read_model_config(settings) if settings else {}
    return ModelSource(name=path.stem, version=1, path=path, batching=CHECK_BATCHING,
                       safe_mode=overrides.get("safe_mode", True) if safe_mode is None else safe_mode,
                       runtime=overrides.get("runtime", "auto"),
                       custom_objects_path=custom_objects or _beside(path, "custom_objects.py", "custom_objects.py"),
                       config_path=settings)


def check_file(source: ModelSource) -> tuple[bool, list[str]]:
    """Load, compile and warm up one file; (served?, lines to print)."""
    from app.serving.lifecycle import probe_inputs, warm_up
    from app.serving.loader import LoadFailure, load_model_file
    from app.serving.runtime import CompiledModel, choose_runtime

    started = time.perf_counter()
    try:
        loaded = load_model_file(source)
        load_seconds = time.perf_counter() - started
        compiled = CompiledModel(loaded)
        warmup_seconds, sample = warm_up(compiled, loaded.signature)
        forward, not_tflite = choose_runtime(compiled, probe_inputs(sample), source.runtime, 1)
    except LoadFailure as exc:
        return False, [f"{source.path}: FAILED {exc}"]
    except Exception as exc:  # noqa: BLE001 - any cause becomes the reason
        return False, [f"{source.path}: FAILED {' '.join(f'{type(exc).__name__}: {exc}'.split())[:300]}"]
    saved = f"Keras {loaded.keras_version or '?'}" + (f" ({loaded.backend})" if loaded.backend else "")
    lines = [f"{source.path}: OK via {loaded.loaded_by}; {loaded.file_format} saved by {saved}; "
             f"load {load_seconds:.2f}s, warm-up {warmup_seconds:.3f}s"]
    lines.append(f"  runtime {forward.kind}" + (f" (TFLite not used: {not_tflite})" if not_tflite else ""))
    lines += [f"  input  {spec.name}: {spec.dtype} {_shape(spec.shape)}" for spec in loaded.signature.inputs]
    lines += [f"  output {spec.name}: {spec.dtype} {_shape(spec.shape)}" for spec in loaded.signature.outputs]
    return True, lines


def _shape(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("null" if d is None else str(d) for d in shape) + "]"


@models_cli.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--custom-objects", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="custom_objects.py to use (trusted code: it is imported and run).")
@click.option("--unsafe", is_flag=True, help="Keras safe mode off: allow Lambda layers (trusted files only).")
def check(paths: tuple[Path, ...], custom_objects: Path | None, unsafe: bool) -> None:
    """Will each PATH serve? Print the loading path, inputs, outputs and warm-up time, or the reason."""
    failed = 0
    for path in paths:
        try:
            source = source_for(path, custom_objects, False if unsafe else None)
        except ValueError as exc:
            ok, lines = False, [f"{path}: FAILED {exc}"]
        else:
            ok, lines = check_file(source)
        failed += not ok
        for line in lines:
            click.echo(line)
    click.echo(f"{len(paths) - failed} of {len(paths)} file(s) will serve")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    check(prog_name="python -m app.cli check")  # pylint: disable=no-value-for-parameter
