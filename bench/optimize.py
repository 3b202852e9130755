"""Optimize, then serve: the CNN from its Keras file, from float16 and from int8 TFLite; a LiteRT-only server's start.

Run: .venv/bin/python -m bench.optimize [--seconds S]   (needs wrk; results in bench/results/optimize.json)
     .venv/bin/python -m bench.optimize --prepare-only DIR   (step 1 only: the files docs/optimize.md uses)

1. `prepare`: a small CNN trained on a synthetic 10-class image task (a bright square in one of ten places, on
   noise), its calibration and eval data (with labels), and the Iris data as .npz.
2. `python -m app.cli optimize` on the CNN (float16, int8) and on the demo model (none, int8): their reports.
3. Each CNN version served alone by gunicorn (2 workers): req/s and p99 at 1 and 32 connections (1 row a
   request), RSS per worker.
4. Start-up: seconds to ready and RSS per worker of a server of the demo model as .tflite only (LiteRT) and as
   its Keras file (TensorFlow).
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import startup, wrk  # noqa: E402
from bench.servers import children, serve  # noqa: E402

CNN_SHAPE = (28, 28, 1)
# Class k: a bright 6x6 square with its top-left corner at SPOTS[k] (ten distinct places).
SPOTS = ((2, 2), (2, 11), (2, 20), (11, 2), (11, 11), (11, 20), (20, 2), (20, 11), (20, 20), (6, 16))


def synthetic_images(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`rows` noisy 28x28 images and their class (where the bright square is)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, rows)
    images = rng.normal(0.2, 0.15, (rows, *CNN_SHAPE)).astype(np.float32)
    for image, label in zip(images, labels):
        r, c = SPOTS[label]
        image[r:r + 6, c:c + 6] += 0.8
    return images, labels


def prepare(folder: Path) -> dict[str, Path]:
    """Train and save the CNN, write its calibration and eval data and the Iris data; return the paths."""
    import keras

    keras.utils.set_random_seed(11)
    x = keras.Input(CNN_SHAPE, name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu")(x)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(16, 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    model = keras.Model(x, keras.layers.Dense(10, activation="softmax", name="digits")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    images, labels = synthetic_images(3000, seed=1)
    model.fit(images, labels, epochs=3, batch_size=64, verbose=0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "cnn.keras")
    calibration, _ = synthetic_images(300, seed=2)
    np.savez(folder / "cnn_calibration.npz", image=calibration)
    test_images, test_labels = synthetic_images(1000, seed=3)
    np.savez(folder / "cnn_eval.npz", image=test_images, labels=test_labels)
    with open(ROOT / "data" / "iris.csv") as handle:
        rows = list(csv.reader(handle))[1:]
    np.savez(folder / "iris.npz", features=np.array([r[:4] for r in rows], np.float32),
             labels=np.array([r[4] for r in rows], int))
    return {"cnn": folder / "cnn.keras", "cnn_calibration": folder / "cnn_calibration.npz",
            "cnn_eval": folder / "cnn_eval.npz", "iris": ROOT / "models" / "iris" / "1" / "iris.keras",
            "iris_data": folder / "iris.npz"}


def optimize_all(paths: dict[str, Path], folder: Path) -> dict[str, dict]:
    """The optimize reports: the CNN as float16 and int8, the demo model as float32 and int8."""
    from app.optimize.pipeline import run
    from app.optimize.report import table

    plans = {"cnn_float16": ("cnn", "float16", None, paths["cnn_eval"]),
             "cnn_int8": ("cnn", "int8", paths["cnn_calibration"], paths["cnn_eval"]),
             "iris_none": ("iris", "none", None, paths["iris_data"]),
             "iris_int8": ("iris", "int8", paths["iris_data"], paths["iris_data"])}
    reports = {}
    for name, (model, quantize, calibration, eval_path) in plans.items():
        reports[name] = run(paths[model], folder / f"{name}.tflite", quantize, calibration, None, "layer", eval_path)
        print(f"\n## {name}\n" + "\n".join(table(reports[name])))
    return reports


def serve_rows(folder: Path, versions: dict[str, Path], seconds: float) -> list[dict]:
    """req/s, p99 and RSS per worker of each CNN version served alone, at 1 and 32 connections."""
    images, _ = synthetic_images(1, seed=4)
    script = wrk.write_script(folder / "wrk", "cnn-1", json.dumps({"instances": images.tolist()}).encode())
    rows = []
    for label, model_file in versions.items():
        model_dir = folder / f"serve-{label}" / "cnn" / "1"
        model_dir.mkdir(parents=True)
        shutil.copy(model_file, model_dir / model_file.name)
        with serve("service", model_dir.parent.parent, folder / "logs", {"WEB_CONCURRENCY": "2"}) as (base, pid):
            for connections in (1, 32):
                result = wrk.run(base + "/predict", script, connections, seconds)
                rows.append({"served": label, "connections": connections, "rps": result["rps"],
                             "p99_ms": result["p99_ms"], "non_2xx": result["non_2xx"],
                             "worker_rss_mb": [startup.process_rss_mb(p) for p in children(pid)]})
                print(rows[-1])
    return rows


def main() -> None:
    """Prepare, optimize, serve and start; print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="wrk duration per point")
    parser.add_argument("--prepare-only", type=Path, metavar="DIR", help="write the CNN and the data to DIR, stop")
    args = parser.parse_args()
    if args.prepare_only:
        for path in prepare(args.prepare_only).values():
            print(path)
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        paths = prepare(folder / "data")
        reports = optimize_all(paths, folder)
        serving = serve_rows(folder, {"keras": paths["cnn"], "tflite-float16": folder / "cnn_float16.tflite",
                                      "tflite-int8": folder / "cnn_int8.tflite"}, args.seconds)
        litert_only = folder / "start-litert" / "iris" / "1"
        litert_only.mkdir(parents=True)
        shutil.copy(folder / "iris_none.tflite", litert_only / "model.tflite")
        starts = {"litert (iris .tflite only)": startup.measure(litert_only.parent.parent),
                  "tensorflow (iris .keras)": startup.measure(ROOT / "models")}
    for label, start in starts.items():
        print(f"{label}: ready in {start['seconds_to_ready']} s, worker RSS {start['worker_rss_mb']} MB")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "optimize.json").write_text(json.dumps({"reports": reports, "serving": serving, "startup": starts},
                                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
