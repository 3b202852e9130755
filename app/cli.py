"""`flask --app wsgi models check PATH...`: will my file serve? (also `python -m app.cli check PATH...`).

Each PATH is prepared exactly as the server's loader prepares a model version (`lifecycle.prepare`:
load, compile, warm up, choose the runtime); the model folder is neither needed nor loaded. Settings and custom code
next to the file are found like in the model folder: `NAME.serving.json` / `NAME.custom_objects.py`
beside `NAME.h5`, or `serving.json` / `custom_objects.py` in `NAME/` for `NAME/VERSION/file`; custom code
is imported only when named with `--custom-objects FILE` (the operator's opt-in).
"""
from __future__ import annotations

from pathlib import Path

import click

from app.optimize.command import optimize
from app.serving.types import BatchingSettings, ModelSource

CHECK_BATCHING = BatchingSettings(max_batch_size=1, max_batch_delay_ms=0, max_queue_rows=1, request_timeout=1)
CHECK_TF_THREADS = (1, 1)  # intra-op, inter-op: the server's defaults


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
    """The aspired version the source would build for `path`, with command-line overrides."""
    from app.serving.model_settings import read_model_settings

    settings = _beside(path, "serving.json", "serving.json")
    model = read_model_settings(settings)
    return ModelSource(name=path.stem, version=1, path=path, batching=CHECK_BATCHING,
                       safe_mode=model.safe_mode if safe_mode is None else safe_mode,
                       runtime=model.runtime or "auto",
                       custom_objects_path=custom_objects or _beside(path, "custom_objects.py", "custom_objects.py"),
                       allow_custom_code=custom_objects is not None, config_path=settings)


def check_file(source: ModelSource) -> tuple[bool, list[str]]:
    """Load, compile and warm up one file; (served?, lines to print)."""
    from app.errors import LoadError
    from app.serving.lifecycle import prepare  # imports TensorFlow

    try:
        ready = prepare(source, CHECK_TF_THREADS)
    except LoadError as exc:
        return False, [f"{source.path}: FAILED {exc}"]
    loaded, not_tflite = ready.loaded, ready.not_tflite
    saved = f"Keras {loaded.keras_version or '?'}" + (f" ({loaded.backend})" if loaded.backend else "")
    lines = [f"{source.path}: OK via {loaded.loaded_by}; {loaded.file_format} saved by {saved}; "
             f"load {ready.load_seconds:.2f}s, warm-up {ready.warmup_seconds:.3f}s"]
    if getattr(loaded, "model", None) is not None:  # a .tflite file has no Keras model
        from app.serving.legacy.lambda_layer import translated_lambdas

        lines += [f"  lambda {item['layer']}: translated as {item['expression']} (its bytecode was read, not run)"
                  for item in translated_lambdas(loaded.model)]
    lines.append(f"  runtime {ready.forward.kind}" + (f" (TFLite not used: {not_tflite})" if not_tflite else ""))
    lines += [f"  input  {spec.name}: {spec.dtype} {_shape(spec.shape)}" for spec in loaded.signature.inputs]
    lines += [f"  output {spec.name}: {spec.dtype} {_shape(spec.shape)}" for spec in loaded.signature.outputs]
    return True, lines


def _shape(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("null" if d is None else str(d) for d in shape) + "]"


@models_cli.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--custom-objects", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="custom_objects.py to import and run (trusted code; without it none is imported).")
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


models_cli.add_command(optimize)  # `optimize SRC --out DST.tflite`: app/optimize/, docs/optimize.md

if __name__ == "__main__":
    models_cli(prog_name="python -m app.cli")  # pylint: disable=no-value-for-parameter
