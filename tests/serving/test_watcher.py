"""The watcher (issue #20 item 4): re-plan every SERVING_POLL_SECONDS and on a new control generation."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np

from app import create_app
from app.serving.watcher import Watcher
from tests import model_builders


class RecordingRegistry:
    def __init__(self) -> None:
        self.applied: list[dict] = []
        self.waited = 0

    def apply(self, plans) -> None:
        self.applied.append(plans)

    def wait_applied(self, timeout=None) -> bool:
        self.waited += 1
        return True


def until(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_watcher_re_plans_and_applies_every_poll_interval():
    registry, plans = RecordingRegistry(), iter(range(1000))
    watcher = Watcher(registry, lambda: {"n": next(plans)}, 0.05)
    watcher.start()
    try:
        assert until(lambda: len(registry.applied) >= 3)
    finally:
        watcher.stop()
    assert [plan["n"] for plan in registry.applied[:3]] == [0, 1, 2] and registry.waited == 0


def test_nothing_to_watch_starts_no_thread():
    watcher = Watcher(RecordingRegistry(), dict, 0)
    watcher.start()
    assert not watcher.active and watcher._thread is None


def test_a_new_generation_re_plans_at_once_then_reports_after_wait_applied():
    registry, reported, generation = RecordingRegistry(), [], [3]
    watcher = Watcher(registry, lambda: {"generation": generation[0]}, 0, generation=lambda: generation[0],
                      report=reported.append)
    assert watcher.active and watcher.generation == 3
    assert not watcher.check(poll_due=False)  # nothing changed
    generation[0] = 4
    assert watcher.check(poll_due=False)
    assert registry.applied == [{"generation": 4}] and registry.waited == 1 and reported == [4]
    watcher.start()
    try:
        generation[0] = 5
        assert until(lambda: reported == [4, 5])
    finally:
        watcher.stop()


def test_a_plan_that_raises_is_skipped_until_the_next_poll():
    registry, calls = RecordingRegistry(), []

    def plan():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("folder gone")
        return {}

    watcher = Watcher(registry, plan, 0.05)
    assert not watcher.check()
    assert watcher.check() and registry.applied == [{}]


def predict(client) -> int:
    response = client.post("/predict", json={"model": "m", "instances": np.zeros((1, 4)).tolist()})
    assert response.status_code == 200, response.json
    return response.json["version"]


def test_a_watched_folder_loads_a_published_version_and_unloads_a_removed_one(tmp_path: Path):
    models = tmp_path / "models"
    model_builders.dense(models / "m" / "1" / "model.keras", seed=1)
    app = create_app({"TESTING": True, "MODEL_DIR": models, "POLL_SECONDS": 0.2})
    registry, client = app.extensions["registry"], app.test_client()
    try:
        assert registry.wait_until_settled(120) and predict(client) == 1
        errors: list[int] = []
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                response = client.post("/predict", json={"model": "m", "instances": np.zeros((1, 4)).tolist()})
                if response.status_code != 200:
                    errors.append(response.status_code)

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            staged = model_builders.dense(tmp_path / "staging" / "2" / "model.keras", seed=2)
            staged.parent.rename(models / "m" / "2")  # the safe way: write elsewhere, rename into place
            assert until(lambda: predict(client) == 2, 120)
            shutil.rmtree(models / "m" / "2")
            assert until(lambda: predict(client) == 1, 60)
            assert until(lambda: registry.get("m", 2).state.value == "END", 60)
        finally:
            stop.set()
            thread.join(60)
        assert errors == []
        listed = client.get("/models/m").json
        assert [(v["version"], v["state"]) for v in listed["versions"]] == [(1, "AVAILABLE"), (2, "END")]
    finally:
        registry.close()
