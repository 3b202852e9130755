"""The folder of the workers' metric files (prometheus-client's multiprocess mode), run by the gunicorn master.

At start the master picks PROMETHEUS_MULTIPROC_DIR (or makes a folder in /dev/shm) and empties it,
before any worker forks: a worker imports prometheus-client with the variable already set. When a
worker exits the master marks it dead (its live gauges stop counting; its counters stay, so sums
never go backwards); at exit it removes a folder it made.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_made: list[Path] = []


def prepare_folder() -> Path:
    """(Master, at start.) The metric files' folder, set in the environment the workers inherit, emptied."""
    given = os.environ.get(VARIABLE)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    else:
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        folder = Path(tempfile.mkdtemp(prefix="keras-serve-metrics-", dir=shm))
        _made.append(folder)
    os.environ[VARIABLE] = str(folder)
    return folder


def mark_dead(pid: int) -> None:
    """(Master, a worker exited.) Drop the live gauges of worker `pid`."""
    if os.environ.get(VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def remove_made_folder() -> None:
    """(Master, at exit.) Remove the folder `prepare_folder` made (not one the operator named)."""
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)
