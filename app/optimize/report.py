"""What an optimization costs and saves, measured in one run on one machine: sizes, latency, differences."""
from __future__ import annotations

import gzip
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.optimize.data import Dataset
from app.serving.types import Arrays, ForwardPass

LATENCY_ROWS = (1, 32)
LATENCY_BUDGET_S = 0.4   # per model and row count, at most (roughly)
EVAL_CHUNK = 32          # rows per forward pass when computing outputs over the eval data
PRUNING_NOTE = ("zeros shrink the gzip-compressed file; TFLite's dense CPU kernels still multiply by them, "
                "so pruning alone does not make a call faster")


def file_sizes(path: Path) -> dict[str, int]:
    """Bytes of `path` on disk and gzip-compressed (level 9)."""
    data = path.read_bytes()
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9, mtime=0))}


def latency_us(forward: ForwardPass, data: Dataset) -> dict[str, float]:
    """Median microseconds per call at each of LATENCY_ROWS rows (the eval rows, tiled as needed)."""
    out = {}
    for rows in LATENCY_ROWS:
        inputs = {name: np.resize(array, (rows, *array.shape[1:])) for name, array in data.inputs.items()}
        forward(inputs)
        timings: list[float] = []
        deadline = time.perf_counter() + LATENCY_BUDGET_S
        while len(timings) < 200 and (len(timings) < 5 or time.perf_counter() < deadline):
            began = time.perf_counter()
            forward(inputs)
            timings.append(time.perf_counter() - began)
        out[str(rows)] = round(statistics.median(timings) * 1e6, 1)
    return out


def outputs_over(forward: ForwardPass, data: Dataset) -> Arrays:
    """`forward`'s outputs over every eval row, EVAL_CHUNK rows a call."""
    parts: list[Arrays] = []
    for start in range(0, data.rows, EVAL_CHUNK):
        parts.append(forward({name: array[start:start + EVAL_CHUNK] for name, array in data.inputs.items()}))
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def agreement(original: Arrays, optimized: Arrays, labels: np.ndarray | None) -> dict[str, Any]:
    """Per output: max and mean absolute difference; for classifiers (rows x classes) top-1 agreement and,
    with labels and one output, each model's accuracy."""
    report: dict[str, Any] = {}
    for name, want in original.items():
        have = optimized[name].astype(np.float64)
        diff = np.abs(have - want.astype(np.float64))
        entry: dict[str, Any] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
        if want.ndim == 2 and want.shape[1] >= 2:
            top_want, top_have = want.argmax(axis=1), have.argmax(axis=1)
            entry["top1_agreement"] = float(np.mean(top_want == top_have))
            if labels is not None and len(original) == 1:
                truth = labels.argmax(axis=1) if labels.ndim == 2 else labels.astype(np.int64).ravel()
                entry["accuracy"] = {"original": float(np.mean(top_want == truth)),
                                     "optimized": float(np.mean(top_have == truth))}
        report[name] = entry
    return report


def table(report: dict[str, Any]) -> list[str]:
    """The report as lines of text: a two-column table, then the differences, the path and the notes."""
    original, optimized = report["original"], report["optimized"]
    rows = [("file bytes", original["bytes"], optimized["bytes"]),
            ("gzip bytes", original["gzip_bytes"], optimized["gzip_bytes"])]
    rows += [(f"latency {n} row{'s' if n != '1' else ''} (us)", original["latency_us"][n], optimized["latency_us"][n])
             for n in original["latency_us"]]
    lines = [f"{'':<24}{'original':>14}{'optimized':>14}{'ratio':>8}"]
    for label, before, after in rows:
        ratio = f"{after / before:.2f}x" if before else "-"
        lines.append(f"{label:<24}{before:>14,}{after:>14,}{ratio:>8}")
    for name, entry in report["outputs"].items():
        line = f"output {name}: max |diff| {entry['max_abs_diff']:.3g}, mean |diff| {entry['mean_abs_diff']:.3g}"
        if "top1_agreement" in entry:
            line += f", top-1 agreement {entry['top1_agreement']:.1%}"
        if "accuracy" in entry:
            acc = entry["accuracy"]
            line += f", accuracy {acc['original']:.1%} -> {acc['optimized']:.1%}"
        lines.append(line)
    lines.append(f"eval data: {report['eval_data']}")
    if report.get("calibration"):
        lines.append(f"calibration: {report['calibration']}")
    lines.append(f"conversion: {' -> '.join(report['conversion_path'])}")
    for kernel in report.get("pruning", {}).get("kernels", []):
        lines.append(f"pruned {kernel['layer']}: {kernel['zeros']:,} of {kernel['weights']:,} weights zero "
                     f"({kernel['sparsity']:.1%})")
    lines += [f"note: {note}" for note in report["notes"]]
    return lines


def report_path(dst: Path) -> Path:
    """Where the JSON report of DST goes: DST.report.json."""
    return dst.with_name(dst.name + ".report.json")


def write_report(dst: Path, report: dict[str, Any]) -> None:
    """Write the report next to DST."""
    report_path(dst).write_text(json.dumps(report, indent=2) + "\n")
