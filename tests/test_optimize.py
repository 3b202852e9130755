"""The optimize command: each quantization on a real dense model and CNN, pruning, the report's figures, errors."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from click.testing import CliRunner

from app.cli import models_cli
from app.optimize.pipeline import OptimizeError, run
from app.optimize.prune import prunable_layers, prune
from tests import model_builders as mb

# Largest |Keras - TFLite| allowed on softmax outputs, by quantization (int8 is judged by top-1 agreement too).
TOLERANCE = {"none": 1e-5, "float16": 2e-3, "dynamic": 2e-2, "int8": 0.2}
MODELS = {"dense": (mb.dense, "features", (4,)), "cnn": (mb.cnn, "image", (28, 28, 1))}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Each model's Keras file with calibration and eval data drawn from one distribution (disjoint rows)."""
    root = tmp_path_factory.mktemp("optimize")
    rng = np.random.default_rng(7)
    out = {}
    for name, (build, key, shape) in MODELS.items():
        np.savez(root / f"{name}_cal.npz", **{key: rng.standard_normal((200, *shape)).astype(np.float32)})
        np.savez(root / f"{name}_eval.npz", **{key: rng.standard_normal((150, *shape)).astype(np.float32)})
        out[name] = (build(root / f"{name}.keras"), root / f"{name}_cal.npz", root / f"{name}_eval.npz")
    return out


def litert_outputs(path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The one output of `path` over `inputs`, row by row, from a plain LiteRT interpreter (hand-quantised)."""
    runner = Interpreter(model_path=str(path)).get_signature_runner()
    (name, detail), = runner.get_input_details().items()
    (output, out_detail), = runner.get_output_details().items()
    rows = []
    for row in inputs[name]:
        x = row[None]
        scale, zero = detail["quantization"]
        if scale:
            x = np.clip(np.rint(x / scale) + zero, -128, 127).astype(np.int8)
        y = runner(**{name: x})[output]
        out_scale, out_zero = out_detail["quantization"]
        rows.append((y.astype(np.float32) - out_zero) * out_scale if out_scale else y)
    return np.concatenate(rows)


@pytest.mark.parametrize("quantize", ["none", "dynamic", "float16", "int8"])
@pytest.mark.parametrize("model", ["dense", "cnn"])
def test_each_quantization_stays_within_its_tolerance_and_the_report_matches_a_recomputation(
        files, tmp_path, model, quantize):
    src, calibration, eval_file = files[model]
    dst = tmp_path / f"{model}.tflite"
    report = run(src, dst, quantize, calibration if quantize == "int8" else None, None, "layer", eval_file)
    inputs = dict(np.load(eval_file))
    want = np.asarray(mb.reference(src, inputs[MODELS[model][1]]))
    got = litert_outputs(dst, inputs)
    diff = np.abs(got.astype(np.float64) - want)
    (entry,) = report["outputs"].values()
    assert diff.max() <= TOLERANCE[quantize]
    assert entry["max_abs_diff"] == pytest.approx(diff.max(), rel=1e-3, abs=1e-6)
    assert entry["mean_abs_diff"] == pytest.approx(diff.mean(), rel=1e-3, abs=1e-7)
    assert entry["top1_agreement"] == pytest.approx(np.mean(got.argmax(1) == want.argmax(1)))
    assert entry["top1_agreement"] >= (0.95 if quantize == "int8" else 0.99)
    assert report["optimized"]["bytes"] == dst.stat().st_size
    assert report["optimized"]["gzip_bytes"] == len(gzip.compress(dst.read_bytes(), 9, mtime=0))
    assert report["original"]["bytes"] == src.stat().st_size
    assert set(report["original"]["latency_us"]) == set(report["optimized"]["latency_us"]) == {"1", "32"}
    assert json.loads((tmp_path / f"{model}.tflite.report.json").read_text()) == report
    if quantize in ("float16", "int8") or model == "cnn" and quantize == "dynamic":
        assert report["optimized"]["bytes"] < report["original"]["bytes"]


def test_labels_in_the_eval_file_give_each_model_s_accuracy(files, tmp_path):
    src, calibration, eval_file = files["dense"]
    inputs = dict(np.load(eval_file))
    labels = np.asarray(mb.reference(src, inputs["features"])).argmax(1)
    labels[:15] = (labels[:15] + 1) % 3  # 10% wrong on purpose: accuracy 90% for the original
    np.savez(tmp_path / "labelled.npz", features=inputs["features"], labels=labels)
    report = run(src, tmp_path / "d.tflite", "float16", None, None, "layer", tmp_path / "labelled.npz")
    assert report["outputs"]["probs"]["accuracy"]["original"] == pytest.approx(0.9)
    assert "with labels" in report["eval_data"]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_pruning_reaches_the_requested_sparsity_exactly_on_the_pruned_kernels(files, scope):
    import keras

    model = keras.models.load_model(files["cnn"][0])
    kernels = prune(model, 0.6, scope)
    zeros = [int(np.count_nonzero(np.asarray(layer.kernel.numpy()) == 0)) for layer in prunable_layers(model)]
    sizes = [int(np.asarray(layer.kernel.numpy()).size) for layer in prunable_layers(model)]
    assert [k.zeros for k in kernels] == zeros and [k.weights for k in kernels] == sizes == [36, 6760]
    if scope == "layer":
        assert zeros == [round(0.6 * n) for n in sizes]
    else:
        assert sum(zeros) == round(0.6 * sum(sizes))


def test_pruned_zeros_reach_the_file_and_the_report_says_they_do_not_speed_up_cpu(files, tmp_path):
    src, _, eval_file = files["cnn"]
    report = run(src, tmp_path / "pruned.tflite", "none", None, 0.75, "layer", eval_file)
    interpreter = Interpreter(model_path=str(tmp_path / "pruned.tflite"))
    weights = {}
    for detail in interpreter.get_tensor_details():
        try:
            weights.setdefault(int(np.prod(detail["shape"])), interpreter.get_tensor(detail["index"]))
        except ValueError:
            continue
    for kernel in report["pruning"]["kernels"]:
        assert kernel["zeros"] == round(0.75 * kernel["weights"])
        assert np.count_nonzero(weights[kernel["weights"]] == 0) == kernel["zeros"]
    assert report["optimized"]["gzip_bytes"] < report["original"]["gzip_bytes"]
    assert any("do not make a call faster" in note or "not make a call faster" in note for note in report["notes"])


def test_int8_without_calibration_exits_non_zero_and_says_so(files, tmp_path):
    result = CliRunner().invoke(models_cli, ["optimize", str(files["dense"][0]), "--out", str(tmp_path / "x.tflite"),
                                             "--quantize", "int8"])
    assert result.exit_code == 1
    assert "--calibration" in result.output and "never calibrates on random data" in result.output
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("arrays, words", [
    ({"pixels": np.zeros((4, 4), np.float32)}, "missing ['features']; unknown ['pixels']"),
    ({"features": np.zeros((4, 5), np.float32)}, "input 'features' has shape [4, 5], the model takes ['rows', 4]"),
])
def test_a_calibration_file_whose_names_or_shapes_do_not_fit_is_refused(files, tmp_path, arrays, words):
    np.savez(tmp_path / "bad.npz", **arrays)
    result = CliRunner().invoke(models_cli, ["optimize", str(files["dense"][0]), "--out", str(tmp_path / "x.tflite"),
                                             "--quantize", "int8", "--calibration", str(tmp_path / "bad.npz")])
    assert result.exit_code == 1 and words in result.output, result.output


def test_an_unconvertible_model_exits_non_zero_naming_the_op(tmp_path):
    src = mb.tokens_lstm(tmp_path / "tokens.keras")
    result = CliRunner().invoke(models_cli, ["optimize", str(src), "--out", str(tmp_path / "t.tflite")])
    assert result.exit_code == 1
    assert "cannot convert: conversion failed:" in result.output and "'tf." in result.output, result.output


def test_the_cli_prints_the_report_table_and_writes_both_files(files, tmp_path):
    src, calibration, _ = files["dense"]
    result = CliRunner().invoke(models_cli, ["optimize", str(src), "--out", str(tmp_path / "d.tflite"),
                                             "--quantize", "int8", "--calibration", str(calibration)])
    assert result.exit_code == 0, result.output
    for words in ("file bytes", "gzip bytes", "latency 1 row (us)", "latency 32 rows (us)", "top-1 agreement",
                  "eval data: dense_cal.npz (200 rows)", "full-integer int8"):
        assert words in result.output
    assert (tmp_path / "d.tflite").stat().st_size > 0 and (tmp_path / "d.tflite.report.json").is_file()


def test_pruning_a_model_without_dense_or_conv_kernels_is_refused(tmp_path):
    with pytest.raises(OptimizeError, match="no Dense or Conv kernel"):
        run(mb.int64_identity(tmp_path / "ids.keras"), tmp_path / "i.tflite", "none", None, 0.5, "layer", None)
