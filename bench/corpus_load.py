"""Corpus load time: this server's loader on every file vs Keras 3 alone on the files it can read.

Usage: .venv/bin/python bench/corpus_load.py [CORPUS]   (default: ../shared/corpus)
Each side runs in a fresh process, so imports count; "ready" includes the compiled warm-up call.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERAS3_ALONE = """
import json, os, sys, time, warnings
started = time.perf_counter()
os.environ["KERAS_BACKEND"] = "tensorflow"
warnings.filterwarnings("ignore")
import keras, numpy as np
imported = time.perf_counter()
ok = []
for name in sys.argv[1:]:
    try:
        model = keras.saving.load_model(name, compile=False)
    except Exception:
        continue
    ok.append(name)
    model([np.zeros([1] + [8 if d is None else d for d in t.shape[1:]], t.dtype) for t in model.inputs])
print(json.dumps([ok, imported - started, time.perf_counter() - imported]))
"""
OURS = """
import json, sys, time, warnings, logging
started = time.perf_counter()
warnings.filterwarnings("ignore")
logging.disable(logging.INFO)
from pathlib import Path
from app.cli import CHECK_BATCHING
from app.serving.lifecycle import warm_up
from app.errors import LoadError
from app.serving.loader import load_model_file
from app.serving.runtime import CompiledModel
from app.serving.types import ModelSource
imported = time.perf_counter()
ok = []
for name in sys.argv[1:]:
    try:
        loaded = load_model_file(ModelSource(Path(name).stem, 1, Path(name), CHECK_BATCHING))
        warm_up(CompiledModel(loaded), loaded.signature)
        ok.append(name)
    except LoadError:
        pass
print(json.dumps([ok, imported - started, time.perf_counter() - imported]))
"""


def run(code: str, files: list[str]) -> tuple[list[str], float, float, float]:
    """(files ready, import seconds, load+warm-up seconds, process wall seconds) in a fresh process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True, env=env,
                          cwd=REPO, check=True)
    wall = time.perf_counter() - started
    ok, imports, loading = json.loads(done.stdout.strip().splitlines()[-1])
    return ok, imports, loading, wall


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / ".." / "shared" / "corpus"
    entries = json.loads((corpus / "manifest.json").read_text())
    files = [str(corpus / "files" / e["file"]) for e in entries]
    keras3 = run(KERAS3_ALONE, files)
    ours = run(OURS, files)
    same = run(OURS, keras3[0])
    rows = (("keras3 alone", keras3), ("this server", ours), ("server, same", same))
    for label, (ok, imports, loading, wall) in rows:
        print(f"{label:13s}: {len(ok):2d}/{len(files)} files ready; imports {imports:.2f}s, "
              f"load+warm-up {loading:.2f}s, process {wall:.2f}s")
    print(f"ratio (process wall): {ours[3] / keras3[3]:.2f}x; ratio (load+warm-up): {ours[2] / keras3[2]:.2f}x")


if __name__ == "__main__":
    main()
