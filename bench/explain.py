"""Explanations: latency per row (bench MLP and CNN, integrated gradients at 50 steps) and the `/predict` p99
of the MLP (1 row, one client) alone and while explanations run back to back.

Run: .venv/bin/python -m bench.explain [--requests 20] [--predicts 1000] [--explain-clients 2]
Serves the bench models with WEB_CONCURRENCY=1 (explanations and predictions share one worker: the
worst case for the lane), prints a table and writes bench/results/explain.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import servers  # noqa: E402
from bench.models import build_models, sample_rows  # noqa: E402

STEPS = 50
ROWS = (1, 8)
SERVER_ENV = {"WEB_CONCURRENCY": "1", "SERVING_GRPC_PORT": "0", "SERVING_MAX_EXPLAIN_ROWS": "16"}


def explain_body(model: str, rows: int) -> dict:
    """An integrated-gradients request for `rows` rows of `model`."""
    return {"model": model, "instances": sample_rows(model, rows).round(4).tolist(), "steps": STEPS}


def explain_ms_per_row(base: str, model: str, rows: int, requests_count: int) -> float:
    """Median milliseconds of one explanation of `rows` rows, divided by `rows` (after one warm-up)."""
    session, body = requests.Session(), explain_body(model, rows)
    session.post(f"{base}/explain", json=body, timeout=120).raise_for_status()
    timings = []
    for _ in range(requests_count):
        began = time.perf_counter()
        session.post(f"{base}/explain", json=body, timeout=120).raise_for_status()
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings) / rows


def predict_p99_ms(base: str, count: int) -> float:
    """p99 of `count` sequential 1-row MLP predictions on one connection (ms)."""
    session = requests.Session()
    body = {"model": "mlp", "instances": sample_rows("mlp", 1).round(4).tolist()}
    timings = []
    for _ in range(count):
        began = time.perf_counter()
        session.post(f"{base}/predict", json=body, timeout=30).raise_for_status()
        timings.append((time.perf_counter() - began) * 1000)
    return float(np.percentile(timings, 99))


def with_explanations(base: str, clients: int, predicts: int) -> tuple[float, int, int]:
    """The /predict p99 while `clients` threads explain the CNN back to back; (p99, answered, refused 429)."""
    stop, statuses = threading.Event(), []

    def explain() -> None:
        session, body = requests.Session(), explain_body("cnn", 1)
        while not stop.is_set():
            statuses.append(session.post(f"{base}/explain", json=body, timeout=120).status_code)

    threads = [threading.Thread(target=explain) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        while not statuses:
            time.sleep(0.05)
        p99 = predict_p99_ms(base, predicts)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return p99, statuses.count(200), statuses.count(429)


def main() -> None:
    """Measure, print the table, write bench/results/explain.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="timed explanations per model and row count")
    parser.add_argument("--predicts", type=int, default=1000, help="predictions per p99 measurement")
    parser.add_argument("--explain-clients", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="keras-bench-explain-"))
    build_models(work / "models")
    result: dict = {"steps": STEPS, "explain_ms_per_row": {}, "command": "python -m bench.explain"}
    with servers.serve("service", work / "models", work / "logs", SERVER_ENV) as (base, _):
        for model in ("mlp", "cnn"):
            for rows in ROWS:
                result["explain_ms_per_row"][f"{model}-{rows}"] = round(
                    explain_ms_per_row(base, model, rows, args.requests), 2)
        alone = predict_p99_ms(base, args.predicts)
        loaded, answered, refused = with_explanations(base, args.explain_clients, args.predicts)
    result.update(predict_p99_ms_alone=round(alone, 2), predict_p99_ms_with_explanations=round(loaded, 2),
                  explain_clients=args.explain_clients, explanations_answered=answered, explanations_refused=refused)
    print(f"explain, integrated gradients, {STEPS} steps (median ms per row):")
    for key, value in result["explain_ms_per_row"].items():
        print(f"  {key:>8} rows/request: {value:8.2f}")
    print(f"/predict p99 (mlp, 1 row): alone {alone:.2f} ms; with {args.explain_clients} explain clients "
          f"{loaded:.2f} ms ({answered} explanations answered, {refused} refused with 429)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "explain.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
