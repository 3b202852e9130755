"""bench.rollout's steps: the changes a rollout makes, in order, and what each must lead to."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.models import sample_rows
from bench.rollout_procs import write_json

MODEL = "mlp"
TOKEN = "rollout-bench-token"
API_TIMEOUT_S = 160.0


@dataclass(frozen=True)
class Step:
    """One change: `change()` makes it (returning a note and, when the change itself waits for every
    worker, its seconds); the watched traffic (the load, or probes of `probe_path`) must reach `version`."""

    name: str
    change: Callable[[], tuple[str, float | None]]
    version: int | None
    forbidden: int | None = None  # a version the load must not get during the step
    probe_path: str = ""
    probe_body: bytes = b""


def _settings(folder: Path, default: int, **labels: int) -> Callable[[], tuple[str, float | None]]:
    def change() -> tuple[str, float | None]:
        write_json(folder / "serving.json", {"default_version": default, "labels": labels})
        return f"serving.json: default_version {default}, labels {labels}", None
    return change


def _publish(staged: Path, target: Path) -> Callable[[], tuple[str, float | None]]:
    def change() -> tuple[str, float | None]:
        os.rename(staged, target)
        return f"renamed {staged.name}/ into {target.parent}", None
    return change


def _unload_v2(base: str) -> Callable[[], tuple[str, float | None]]:
    config = {"version_policy": {"specific": {"versions": [1]}}, "default_version": 1, "labels": {"stable": 1}}

    def change() -> tuple[str, float | None]:
        started = time.monotonic()
        answer = requests.post(f"{base}/v2/repository/models/{MODEL}/load", timeout=API_TIMEOUT_S,
                               json={"parameters": {"config": json.dumps(config)}},
                               headers={"Authorization": f"Bearer {TOKEN}"})
        took = time.monotonic() - started
        return f"POST /v2/repository/models/{MODEL}/load {config} -> {answer.status_code} {answer.text[:200]}", \
            took if answer.ok else None
    return change


def steps(base: str, models: Path, staged: Path) -> list[Step]:
    """The rollout's steps, in order."""
    folder = models / MODEL
    row = sample_rows(MODEL, 1).tolist()
    explicit = json.dumps({"model": MODEL, "version": 2, "instances": row}).encode()
    tf_row = json.dumps({"instances": row}).encode()
    return [
        Step("publish v2", _publish(staged, folder / "2"), 2, forbidden=2, probe_path="/predict", probe_body=explicit),
        Step("canary=2", _settings(folder, 1, stable=1, canary=2), 2, forbidden=2,
             probe_path=f"/v1/models/{MODEL}/labels/canary:predict", probe_body=tf_row),
        Step("stable=2 default 2", _settings(folder, 2, stable=2, canary=2), 2),
        Step("rollback to v1", _settings(folder, 1, stable=1, canary=2), 1),
        Step("unload v2 (API)", _unload_v2(base), None, forbidden=2, probe_path="/predict", probe_body=explicit),
    ]
