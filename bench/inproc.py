"""What one request costs in one process: a 1x256 `POST /predict` through the app's WSGI callable.

.venv/bin/python -m bench.inproc [--base ROOT] [--rounds 3] [--calls 3000] [--profile]
Builds the bench MLP once (bench.models, cached in a temp folder). Then a fresh child process per
checkout creates two apps with `create_app`, SERVING_METRICS=true and false, and calls `app` itself
(what gunicorn calls: create_app's middlewares included) with werkzeug `EnvironBuilder` environs of
a full-precision body (`json.dumps` of float32 values), iterating and closing the answer as gunicorn
does; the request's queue wait is set as gunicorn's worker sets it. Each run of CALLS calls ends
with the metrics' flush (the flusher thread's work for them). Reports, per request in microseconds,
the best of 5 runs (metrics on and off in turn, so both meet the same neighbours) and of ROUNDS
children, in CPU time of the calling thread (`time.thread_time`: other processes on a shared machine
do not count) and of the process (`time.process_time`: the batcher's and TensorFlow's threads too).
`--base ROOT` measures another checkout (e.g. `git worktree add /tmp/base HEAD~3`) in the same run,
the children alternating. `--profile` prints a cProfile of this checkout's request path instead.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(tempfile.gettempdir()) / "bench-inproc-models"

CHILD = r"""
import io, json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
from werkzeug.test import EnvironBuilder
from app import create_app
from app.gunicorn.queue_wait import set_queue_wait
from app.observability.metrics import TALLY

models, calls, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
apps = {}
for metrics in (True, False):  # one after the other: the batchers read metrics.enabled when their model loads
    apps[metrics] = create_app({"MODEL_DIR": models, "METRICS": metrics})
    assert apps[metrics].extensions["registry"].wait_until_settled(300)
row = np.random.default_rng(0).random((1, 256), dtype=np.float32)
body = json.dumps({"model": "mlp", "instances": row.tolist()}).encode()
template = EnvironBuilder(path="/predict", method="POST", data=body, content_type="application/json").get_environ()
set_queue_wait(0.0002)  # as gunicorn's worker does: the load shedder compares it with its limit
status = []

def start_response(code, headers, exc_info=None):
    status.append(code)

def environs(n):
    return [{**template, "wsgi.input": io.BytesIO(body)} for _ in range(n)]

def run(app, batch):
    for environ in batch:
        answer = app(environ, start_response)
        for _ in answer:
            pass
        close = getattr(answer, "close", None)
        if close is not None:
            close()

for app in apps.values():
    run(app, environs(500))  # warm up
assert set(status) == {"200 OK"}, set(status)
if profile:
    import cProfile, pstats
    batch = environs(calls)
    profiler = cProfile.Profile()
    profiler.enable()
    run(apps[True], batch)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(45)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
    sys.exit(0)
best = {metrics: {"thread_us": float("inf"), "process_us": float("inf")} for metrics in apps}
for _ in range(5):  # metrics on and off in turn, so both meet the same neighbours
    for metrics, app in apps.items():
        batch = environs(calls)
        thread, process = time.thread_time(), time.process_time()
        run(app, batch)
        TALLY.flush()  # the flusher thread's share of these requests, counted here
        kept = best[metrics]
        kept["thread_us"] = min(kept["thread_us"], (time.thread_time() - thread) / calls * 1e6)
        kept["process_us"] = min(kept["process_us"], (time.process_time() - process) / calls * 1e6)
assert set(status) == {"200 OK"}, set(status)
print(json.dumps({"on": best[True], "off": best[False]}))
"""


def build(folder: Path) -> Path:
    """The bench models in `folder`, built once (in a child: Keras stays out of this process)."""
    if not (folder / "mlp.keras").exists():
        subprocess.run([sys.executable, "-c", "import pathlib, bench.models as m; "
                        f"m.build_models(pathlib.Path({str(folder)!r}))"], check=True, cwd=ROOT, capture_output=True)
    return folder


def measure(root: Path, models: Path, calls: int, profile: bool = False) -> dict[str, dict[str, float]]:
    """One child process on checkout `root`: per-request CPU microseconds, metrics "on" and "off" (or the
    profile, printed)."""
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", "SERVING_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(models), str(calls), "1" if profile else "0"],
                          cwd=root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the child on {root} failed:\n{done.stderr[-3000:]}")
    if profile:
        print(done.stdout)
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Measure this checkout (and `--base`), metrics on and off, and print one JSON line per setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="another checkout to measure in the same run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--profile", action="store_true", help="cProfile this checkout's path, metrics on")
    args = parser.parse_args()
    models = build(MODELS)
    if args.profile:
        measure(ROOT, models, args.calls, profile=True)
        return
    roots = {"head": ROOT, **({"base": args.base.resolve()} if args.base else {})}
    best: dict[tuple[str, str], dict[str, float]] = {}
    for _ in range(args.rounds):
        for label, root in roots.items():
            for metrics, result in measure(root, models, args.calls).items():
                kept = best.setdefault((label, metrics), result)
                for key, value in result.items():
                    kept[key] = min(kept[key], value)
    for (label, metrics), result in best.items():
        print(json.dumps({"checkout": label, "root": str(roots[label]), "metrics": metrics,
                          **{key: round(value, 1) for key, value in result.items()}}))

if __name__ == "__main__":
    main()
