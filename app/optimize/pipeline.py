"""The optimize run: load, measure the original, prune, convert, write, measure the result, report."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from app.optimize import report as measure
from app.optimize.data import DataError, Dataset, calibration_rows, read_npz, seeded_sample
from app.optimize.prune import prune
from app.serving.types import BatchingSettings, ModelSource

BATCHING = BatchingSettings(max_batch_size=1, max_batch_delay_ms=0, max_queue_rows=1, request_timeout=1)
QUANTIZE_PATHS = {"none": "float32 (no quantization)",
                  "dynamic": "dynamic-range quantization (int8 weights, float activations)",
                  "float16": "float16 weights",
                  "int8": "full-integer int8 (int8 inputs and outputs, quantised at the server's edges)"}


class OptimizeError(Exception):
    """The optimization cannot be done; the message says why (which op, which input, which option)."""


def run(src: Path, dst: Path, quantize: str, calibration: Path | None, sparsity: float | None,
        prune_scope: str, eval_path: Path | None) -> dict[str, Any]:
    """Write DST from SRC and return the report (also written to DST.report.json)."""
    from app.errors import LoadError
    from app.serving.loader import load_model_file  # imports TensorFlow and Keras
    from app.serving.runtime import CompiledModel, configure_threads, export_tflite

    if quantize == "int8" and calibration is None:
        raise OptimizeError("--quantize int8 needs --calibration FILE.npz: representative inputs keyed by input "
                            "name (a few hundred real rows); it never calibrates on random data")
    configure_threads(1, 1)
    try:
        loaded = load_model_file(ModelSource(name=src.stem, version=1, path=src, batching=BATCHING))
        compiled = CompiledModel(loaded)
    except LoadError as exc:
        raise OptimizeError(f"cannot load {src}: {exc}") from None
    signature = loaded.signature
    try:
        calibration_data = read_npz(calibration, signature, "calibration") if calibration else None
        eval_data = (read_npz(eval_path, signature, "eval") if eval_path
                     else calibration_data or seeded_sample(signature))
    except DataError as exc:
        raise OptimizeError(str(exc)) from None
    original_outputs = measure.outputs_over(compiled, eval_data)
    original_latency = measure.latency_us(compiled, eval_data)
    path = [f"{src.name} read by {loaded.loaded_by}"]
    notes = []
    pruning: dict[str, Any] = {}
    if sparsity is not None:
        try:
            kernels = prune(loaded.model, sparsity, prune_scope)
        except ValueError as exc:
            raise OptimizeError(f"--prune: {exc}") from None
        pruning = {"sparsity": sparsity, "scope": prune_scope, "kernels": [k.to_dict() for k in kernels]}
        path.append(f"magnitude pruning to {sparsity:g} per {prune_scope} (no fine-tuning)")
        notes.append(measure.PRUNING_NOTE)
    path += ["Keras export (SavedModel, signature serving_default)", "TFLiteConverter, built-in ops",
             QUANTIZE_PATHS[quantize]]
    content = _convert(export_tflite, compiled, quantize, calibration_data)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(content)
    optimized = _served(dst)
    report = {
        "source": str(src), "output": str(dst), "quantize": quantize,
        "original": {**measure.file_sizes(src), "runtime": "TensorFlow function (traced Keras model)",
                     "latency_us": original_latency},
        "optimized": {**measure.file_sizes(dst), "runtime": "LiteRT interpreter, 1 thread",
                      "latency_us": measure.latency_us(optimized, eval_data)},
        "outputs": measure.agreement(original_outputs, measure.outputs_over(optimized, eval_data), eval_data.labels),
        "eval_data": eval_data.origin,
        "calibration": calibration_data.origin if calibration_data else None,
        "conversion_path": path, "pruning": pruning, "notes": notes,
    }
    measure.write_report(dst, report)
    return report


def _convert(export_tflite: Any, compiled: Any, quantize: str, calibration: Dataset | None) -> bytes:
    """The flatbuffer, or an OptimizeError saying why the model or the quantization cannot be converted."""
    from app.errors import RuntimeUnavailable

    rows = list(calibration_rows(calibration)) if calibration else None
    try:
        return export_tflite(compiled, quantize, rows)
    except RuntimeUnavailable as exc:
        what = f"{quantize} quantization is impossible for this model" if quantize != "none" else "cannot convert"
        raise OptimizeError(f"{what}: {exc}") from None


def _served(dst: Path) -> Any:
    """The written file as the server runs it: read by LiteRT, one thread."""
    from app.serving.tflite_file import read_tflite
    from app.serving.tflite_runtime import LiteModel

    read = read_tflite(dst)
    return LiteModel(read.content, read.signature, read.endpoints, threads=1)
