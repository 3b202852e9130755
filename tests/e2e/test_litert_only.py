"""A model folder of .tflite files only: served on every surface by LiteRT, and no TensorFlow in the workers."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
import requests
from ai_edge_litert.interpreter import Interpreter

from app.optimize.pipeline import run
from tests.support import ROOT, children, running_server

MAX_WORKER_RSS_MB = 150   # issue 18's bar for the demo model
# The module each package left out of the Dockerfile's litert target provides.
MODULE_OF = {"tensorflow_cpu": "tensorflow", "google-pasta": "pasta", "libclang": "clang",
             "markdown-it-py": "markdown_it", "Pygments": "pygments"}
BLOCKER = """import sys
BLOCKED = set({blocked!r})
class LeftOut:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(name + " is not in the litert image")
sys.meta_path.insert(0, LeftOut())
"""
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def iris_data(path: Path) -> Path:
    """data/iris.csv as an .npz keyed by the demo model's input name, with labels."""
    with open(ROOT / "data" / "iris.csv") as handle:
        rows = list(csv.reader(handle))[1:]
    np.savez(path, features=np.array([r[:4] for r in rows], np.float32), labels=np.array([r[4] for r in rows], int))
    return path


@pytest.fixture(scope="module")
def tflite_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("litert")
    data = iris_data(root / "iris.npz")
    folder = root / "models"
    (folder / "iris" / "1").mkdir(parents=True)
    source = ROOT / "models" / "iris" / "1" / "iris.keras"
    run(source, folder / "iris" / "1" / "model.tflite", "none", None, None, "layer", data)
    run(source, folder / "iris_int8.tflite", "int8", data, None, "layer", data)
    for report in folder.rglob("*.report.json"):
        report.unlink()  # not a model: kept out of the folder for clarity (the source ignores it anyway)
    return folder


@pytest.fixture(scope="module")
def server(tflite_folder):
    with running_server(tflite_folder, {"WEB_CONCURRENCY": "2"}) as base:
        yield base


def litert_in_process(path: Path, rows: np.ndarray) -> np.ndarray:
    """The file's output for `rows` from a plain LiteRT interpreter, quantising by hand when the model is int8."""
    runner = Interpreter(model_path=str(path)).get_signature_runner()
    (name, detail), = runner.get_input_details().items()
    scale, zero = detail["quantization"]
    if scale:
        rows = np.clip(np.rint(rows / scale) + zero, -128, 127).astype(np.int8)
    (output, out_detail), = runner.get_output_details().items()
    result = runner(**{name: rows})[output]
    out_scale, out_zero = out_detail["quantization"]
    return (result.astype(np.float32) - out_zero) * np.float32(out_scale) if out_scale else result


def tensorflow_libraries(pid: int) -> set[str]:
    """Files of TensorFlow, Keras or tf_keras mapped into process `pid`."""
    paths = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}
    return {p for p in paths if any(part in p for part in ("/tensorflow/", "/keras/", "/tf_keras/"))
            or os.path.basename(p).startswith("libtensorflow")}


def answers(base: str, model: str) -> dict[str, np.ndarray]:
    """The model's output for ROWS on /predict, /v1 and /v2."""
    native = requests.post(f"{base}/predict", json={"model": model, "instances": ROWS}, timeout=30)
    tfserving = requests.post(f"{base}/v1/models/{model}:predict", json={"instances": ROWS}, timeout=30)
    v2 = requests.post(f"{base}/v2/models/{model}/infer", timeout=30, json={"inputs": [
        {"name": "features", "datatype": "FP32", "shape": [len(ROWS), 4], "data": ROWS}]})
    for response in (native, tfserving, v2):
        assert response.status_code == 200, response.text
    output = v2.json()["outputs"][0]
    return {"native": np.array(native.json()["predictions"]), "tfserving": np.array(tfserving.json()["predictions"]),
            "v2": np.array(output["data"]).reshape(output["shape"])}


@pytest.mark.parametrize("model, file", [("iris", "iris/1/model.tflite"), ("iris_int8", "iris_int8.tflite")])
def test_a_tflite_version_answers_on_every_surface_like_litert_in_process(server, tflite_folder, model, file):
    want = litert_in_process(tflite_folder / file, np.array(ROWS, np.float32))
    for surface, got in answers(server, model).items():
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=surface)


def test_the_int8_model_takes_floats_and_shows_its_quantization(server):
    described = requests.get(f"{server}/models/iris_int8", timeout=10).json()["versions"][0]
    assert described["format"] == "tflite" and described["runtime"]["kind"] == "tflite"
    assert described["inputs"] == [{"name": "features", "shape": [None, 4], "dtype": "float32"}]
    quantization = described["quantization"]
    assert set(quantization) == {"features", "species"}
    assert quantization["features"]["dtype"] == "int8" and quantization["features"]["scale"] > 0
    plain = requests.get(f"{server}/models/iris", timeout=10).json()["versions"][0]
    assert "quantization" not in plain


def test_workers_of_a_tflite_only_folder_map_no_tensorflow_and_stay_small(server):
    assert tensorflow_libraries(os.getpid()), "the check must see TensorFlow where it is (this test process)"
    workers = children(server.pid)
    assert len(workers) == 2
    for pid in workers:
        assert tensorflow_libraries(pid) == set(), f"worker {pid} maps TensorFlow or Keras"
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        rss_mb = int(status["VmRSS"].split()[0]) / 1024
        assert rss_mb <= MAX_WORKER_RSS_MB, f"worker {pid} holds {rss_mb:.0f} MB"


def test_a_tflite_version_loads_in_well_under_a_second(server):
    for model in ("iris", "iris_int8"):
        described = requests.get(f"{server}/models/{model}", timeout=10).json()["versions"][0]
        assert described["state"] == "AVAILABLE"
        assert described["load_seconds"] < 1.0, described["load_seconds"]


def test_the_slim_image_s_packages_serve_a_tflite_only_folder(tflite_folder, tmp_path):
    dockerfile = (ROOT / "Dockerfile").read_text()
    left_out = re.search(r"grep -v -i -E '\^\(#\|\(([^)]+)\)==\)'", dockerfile).group(1).split("|")
    assert {"tensorflow_cpu", "keras", "tf_keras", "h5py"} <= set(left_out)
    blocked = sorted(MODULE_OF.get(name, name.replace("-", "_").lower()) for name in left_out)
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(blocked=blocked))
    with running_server(tflite_folder, {"WEB_CONCURRENCY": "1", "PYTHONPATH": str(tmp_path)}) as base:
        assert set(answers(base, "iris_int8")) == {"native", "tfserving", "v2"}
        log = base.log_path.read_text()
    assert "is not in the litert image" not in log
