"""Start a real gunicorn with the project's gunicorn.conf.py on a free 127.0.0.1 port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent


class ServerURL(str):
    """The server's base URL; `.pid` is the gunicorn master's process id, `.log_path` its log (stdout and stderr)."""

    pid: int
    log_path: Path


def until(condition: Callable[[], Any], what: str, timeout: float = 120, interval: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy (returned); fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"never: {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command(app: str = "wsgi:app") -> list[str]:
    """The same command the Dockerfile runs, with this venv's interpreter (and another app if given)."""
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app]


@contextmanager
def running_server(model_dir: Path, env: dict[str, str] | None = None, *, ready_timeout: float = 120,
                   wait_ready: bool = True, app: str = "wsgi:app"):
    """Yield the base URL of a gunicorn serving `model_dir`; stop it (SIGTERM) afterwards."""
    port = free_port()
    # gRPC off unless a test asks for it: every server on SO_REUSEPORT's default port would share it.
    full_env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "SERVING_MODEL_DIR": str(model_dir),
                "SERVING_GRPC_PORT": "0", **(env or {})}
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"gunicorn-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(gunicorn_command(app), cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        base = ServerURL(f"http://127.0.0.1:{port}")
        base.pid, base.log_path = proc.pid, log_path
        try:
            _wait(base, proc, ready_timeout, "/health/ready" if wait_ready else "/health", log_path)
            yield base
        finally:
            stop(proc)


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the server's process group (graceful), SIGKILL it if it has not exited in time."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait(base: str, proc: subprocess.Popen, timeout: float, path: str, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(base + path, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn not ready on {base}{path} after {timeout}s:\n{log_path.read_text()[-3000:]}")


def children(pid: int) -> list[int]:
    """Direct children of `pid` (gunicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found
