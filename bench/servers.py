"""Start the three bench servers under gunicorn on 127.0.0.1, measure their RSS, stop them."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support import children, free_port, stop

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = [sys.executable, "-m", "gunicorn"]


def command(kind: str, port: int) -> list[str]:
    """The gunicorn command line of `service`, `ceiling` or `tutorial`."""
    if kind == "service":
        return [*GUNICORN, "-c", "gunicorn.conf.py", "wsgi:app"]
    if kind == "ceiling":
        return [*GUNICORN, "-c", "gunicorn.conf.py", "bench.ceiling_app:app"]
    return [*GUNICORN, "-w", "2", "-b", f"127.0.0.1:{port}", "--timeout", "120", "bench.tutorial_app:app"]


@contextmanager
def serve(kind: str, model_dir: Path, log_dir: Path, env: dict[str, str] | None = None,
          ready_timeout: float = 180, root: Path = ROOT) -> Iterator[tuple[str, int]]:
    """Yield (base URL, master pid) of a ready server; SIGTERM its process group afterwards.

    The service starts from `root`'s gunicorn.conf.py and wsgi.py, with `root` as its working
    directory and this interpreter (another checkout, for before/after runs); the ceiling and the
    tutorial app are this checkout's own."""
    root = root if kind == "service" else ROOT
    port = free_port()
    full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "SERVING_MODEL_DIR": str(model_dir),
                "BENCH_MODEL_DIR": str(model_dir), "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2",
                **(env or {})}
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{kind}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command(kind, port), cwd=root, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        workers = int(full_env.get("WEB_CONCURRENCY", "2")) if kind != "tutorial" else 2
        _wait_ready(base, proc, ready_timeout, log_path, workers=workers)
        yield base, proc.pid
    finally:
        stop(proc)


def _wait_ready(base: str, proc: subprocess.Popen, timeout: float, log_path: Path, workers: int) -> None:
    """Wait until `workers` consecutive readiness probes succeed (every worker has loaded)."""
    deadline, streak = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            ok = requests.get(base + "/health/ready", timeout=2).status_code == 200
        except requests.RequestException:
            ok = False
        streak = streak + 1 if ok else 0
        if streak >= 4 * workers and len(children(proc.pid)) >= workers:
            return
        time.sleep(0.1 if ok else 0.3)
    raise RuntimeError(f"server not ready on {base} after {timeout}s:\n{log_path.read_text()[-3000:]}")


def rss_mb(pid: int) -> float:
    """RSS of the master plus its workers, in MB."""
    total = 0
    for proc in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)
