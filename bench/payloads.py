"""Payload benchmark: one 1000x256 FP32 request through V2 binary, V2 JSON, TF Serving JSON and /predict.

Against an already running server that serves a model with one input of shape (None, 256):

    .venv/bin/python -m bench.payloads --url http://127.0.0.1:8000 --model mlp
    .venv/bin/python -m bench.payloads --build-models /tmp/bench-models   # bench.models' mlp.keras (and cnn)

The JSON bodies carry the numbers json.dumps writes for the float32 values turned into Python
floats (17 significant digits), as a client sending `x.tolist()` does.
Each path is driven for a few seconds by a few threads (one keep-alive http.client connection each);
bodies are encoded once up front, so the numbers measure the server's decode/infer/encode.
A 429 (queue full: 1000-row requests fill the default 1024-row queue fast) is retried and
counted in `rejected_429`. The forward pass is shared by every path, so a server with
`SERVING_MAX_BATCH_SIZE` >= 1000 shows the decode/encode difference most clearly.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson
import requests

ROWS, FEATURES = 1000, 256
HEADER = "Inference-Header-Content-Length"
RECONNECT_EVERY = 8  # spread each client's requests over the server's workers
Request = tuple[str, bytes, dict[str, str]]


def requests_for(url: str, model: str, input_name: str, x: np.ndarray) -> dict[str, Request]:
    """(url, body, headers) for each path, all carrying the same tensor `x`."""
    json_headers = {"Content-Type": "application/json"}
    head = orjson.dumps({"inputs": [{"name": input_name, "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}})
    v2_json = json.dumps({"inputs": [{"name": input_name, "datatype": "FP32", "shape": list(x.shape),
                                      "data": x.reshape(-1).tolist()}]}).encode()
    instances = x.tolist()
    infer = f"{url}/v2/models/{model}/infer"
    return {
        "v2_binary": (infer, head + x.tobytes(), {HEADER: str(len(head)), "Content-Type": "application/octet-stream"}),
        "v2_json": (infer, v2_json, json_headers),
        "tfserving_json": (f"{url}/v1/models/{model}:predict", json.dumps({"instances": instances}).encode(),
                           json_headers),
        "predict": (f"{url}/predict", json.dumps({"model": model, "instances": instances}).encode(), json_headers),
    }


def drive(request: Request, seconds: float, clients: int) -> dict[str, Any]:
    """Send `request` from `clients` threads for `seconds`; counts, rates and latency percentiles."""
    url, body, headers = request
    latencies: list[float] = []
    failures: list[str] = []
    rejected = [0]  # 429s: the queue was full; the client retries at once (counted, not timed)
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)  # keep-alive, little overhead
        sent = 0
        try:
            while time.perf_counter() < deadline:
                sent += 1
                if sent % RECONNECT_EVERY == 0:  # a kept-alive connection sticks to one gunicorn worker
                    conn.close()
                started = time.perf_counter()
                conn.request("POST", parts.path, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status == 200:
                        latencies.append(elapsed)
                    elif response.status == 429:
                        rejected[0] += 1
                    else:
                        failures.append(f"{response.status} {answer[:200]!r}")
                if response.status == 429:
                    time.sleep(0.005)
        except (OSError, http.client.HTTPException) as exc:
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{url}: {len(failures)} failed requests, first: {failures[0]}")
    ordered = sorted(latencies)
    if not latencies:
        raise RuntimeError(f"{url}: no request succeeded in {seconds}s ({rejected[0]} answered 429)")
    return {"requests": len(latencies), "rejected_429": rejected[0], "seconds": round(wall, 2),
            "request_bytes": len(body),
            "req_per_s": round(len(latencies) / wall, 1), "mb_per_s": round(len(latencies) * len(body) / wall / 1e6, 1),
            "p50_ms": round(1000 * statistics.median(ordered), 1),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)}


def warm_up(request: Request, times: int = 2) -> None:
    """Send `request` a few times; fail loudly unless it answers 200."""
    url, body, headers = request
    for _ in range(times):
        response = requests.post(url, data=body, headers=headers, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")


def run(url: str, model: str, seconds: float = 3.0, clients: int = 2) -> list[dict]:
    """Benchmark every path against `model` at `url`; one dict per path (path, req/s, MB/s, ...)."""
    url = url.rstrip("/")
    meta = requests.get(f"{url}/v2/models/{model}", timeout=10)
    meta.raise_for_status()
    inputs = meta.json()["inputs"]
    if len(inputs) != 1 or inputs[0]["shape"][1:] != [FEATURES]:
        raise SystemExit(f"model {model!r} must have one input of shape [-1, {FEATURES}]; it has {inputs}")
    x = np.random.default_rng(0).random((ROWS, FEATURES), dtype=np.float32)
    results = []
    for path, request in requests_for(url, model, inputs[0]["name"], x).items():
        warm_up(request)
        results.append({"path": path, **drive(request, seconds, clients)})
    return results


def report(results: list[dict], emit: Callable[[str], None] = print) -> None:
    """A table of the results and the V2 binary / V2 JSON throughput ratio."""
    emit(f"{'path':<16}{'req/s':>8}{'MB/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'body MB':>9}")
    for row in results:
        emit(f"{row['path']:<16}{row['req_per_s']:>8}{row['mb_per_s']:>8}{row['p50_ms']:>9}{row['p99_ms']:>9}"
             f"{row['request_bytes'] / 1e6:>9.2f}")
    by_path = {row["path"]: row for row in results}
    if by_path.get("v2_json", {}).get("req_per_s"):
        ratio = by_path["v2_binary"]["req_per_s"] / by_path["v2_json"]["req_per_s"]
        emit(f"V2 binary / V2 JSON: {ratio:.1f}x (target >= 5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--build-models", type=Path, help="save bench.models' models (mlp: 256 inputs) here, exit")
    args = parser.parse_args()
    if args.build_models:
        from bench.models import build_models

        print(build_models(args.build_models))
        return
    report(run(args.url, args.model, args.seconds, args.clients))


if __name__ == "__main__":
    main()
