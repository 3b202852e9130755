"""Time from `gunicorn` start to `/health/ready` 200, and the RSS of each worker.

Run: .venv/bin/python -m bench.startup [MODEL_DIR]   (default: the demo models/)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import children  # noqa: E402
from tests.support import free_port, gunicorn_command  # noqa: E402


def process_rss_mb(pid: int) -> float:
    """RSS of one process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def measure(model_dir: Path) -> dict:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "SERVING_MODEL_DIR": str(model_dir)}
    started = time.perf_counter()
    proc = subprocess.Popen(gunicorn_command(), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        live = ready = None
        while time.perf_counter() - started < 180:
            try:
                status = requests.get(f"{base}/health/ready", timeout=1).status_code
                live = live or time.perf_counter() - started
                if status == 200:
                    ready = time.perf_counter() - started
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        workers = children(proc.pid)
        time.sleep(1.0)  # let the other workers finish loading too
        return {
            "model_dir": str(model_dir),
            "seconds_to_live": round(live or -1, 2),
            "seconds_to_ready": round(ready or -1, 2),
            "master_rss_mb": process_rss_mb(proc.pid),
            "worker_rss_mb": [process_rss_mb(pid) for pid in workers],
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models"
    result = measure(target)
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
