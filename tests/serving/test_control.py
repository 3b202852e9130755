"""Model control across workers (app/serving/control*.py): the control file, the generation in shared memory,
workers that carry a change out and report back, and the answers the API gets.

Workers are simulated in this process: each the real watcher following, through a `WorkerControl`, the real
shared table and runtime folder, with its own slot and pid, in front of a registry that applies the control
state it is given (the watcher's plan here is the control file itself)
(the registries themselves are tested in tests/serving/test_registry.py; the real fan-out across gunicorn's
processes in tests/e2e/test_model_control.py).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from app import errors
from app.serving import control_state
from app.serving.control import InstanceControl, LocalControl
from app.serving.control_state import ControlState, read_state, update_state
from app.serving.control_worker import ControlLink, WorkerControl
from app.serving.readiness import InstanceReadiness, ReadinessTable
from app.serving.types import ModelState
from app.serving.watcher import Watcher
from app.settings import load_settings


class Registry:
    """Applies a control state: model `m` version 1 is END when unloaded, FAILED when its config asks for
    max_batch_size 13 (this registry's way of failing a load), else AVAILABLE."""

    def __init__(self, stuck: bool = False) -> None:
        self.state, self.stuck, self.release = ControlState(), stuck, threading.Event()

    def apply(self, state: ControlState) -> None:
        if self.stuck:
            self.release.wait(60)  # this worker does not carry the change out (until the test ends)
        self.state = state

    def wait_applied(self, timeout: float | None) -> bool:
        return True

    def versions(self) -> list[SimpleNamespace]:
        override = self.state.overrides().get("m")
        if override is not None and override.unloaded:
            state, error = ModelState.END, "unloaded through the API"
        elif override is not None and override.config is not None and override.config.max_batch_size == 13:
            state, error = ModelState.FAILED, "this version cannot be loaded"
        else:
            state, error = ModelState.AVAILABLE, None
        return [SimpleNamespace(name="m", version=1, state=state, error=error)]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "models" / "m" / "1").mkdir(parents=True)
    (tmp_path / "models" / "flat.keras").write_bytes(b"")
    return tmp_path / "models"


@pytest.fixture
def instances():
    made: list[Instance] = []
    yield made
    for instance in made:
        instance.stop()


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    (tmp_path / "runtime" / "results").mkdir(parents=True)
    return tmp_path / "runtime"


class Instance:
    """A shared table, a runtime folder and workers following them."""

    def __init__(self, model_dir: Path, runtime: Path, timeout: float = 60) -> None:
        self.table, self.runtime, self.live = ReadinessTable(slots=4), runtime, set()
        self.settings = load_settings({"MODEL_DIR": model_dir, "RUNTIME_DIR": runtime, "CONTROL_TIMEOUT": timeout})
        self.workers: dict[int, tuple[InstanceReadiness, Registry, Watcher]] = {}

    def start(self, slot: int, pid: int, registry: Registry | None = None) -> Watcher:
        """A worker as the factory and gunicorn's worker make it: first planned from the file, then following."""
        self.live.add(slot)
        readiness = InstanceReadiness(self.table, slot, pid, 2, lambda slot, pid: self._live(slot, pid))
        registry = registry or Registry()
        registry.state = read_state(self.runtime)
        readiness.publish(True, [("m", 1, ModelState.AVAILABLE)], strict=True)
        follower, link = WorkerControl(self.runtime, readiness, registry), ControlLink()
        watcher = Watcher(registry, follower.state, 0, generation=link.generation, report=link.report,
                          apply_timeout=60)
        link.bind(follower)
        self.workers[slot] = (readiness, registry, watcher)
        watcher.start()
        return watcher

    def stop(self) -> None:
        for _, registry, watcher in self.workers.values():
            watcher.stop()
            registry.release.set()

    def _live(self, slot: int, pid: int) -> bool:
        return slot in self.live and slot in self.workers and self.workers[slot][0].pid == pid

    def control(self, slot: int = 0) -> InstanceControl:
        readiness, registry, _ = self.workers[slot]
        return InstanceControl(registry, self.settings, readiness, lambda index: index in self.live, self.runtime)


def test_a_load_returns_once_every_live_worker_has_applied_its_generation(model_dir, runtime, instances):
    instance = Instance(model_dir, runtime)
    instances.append(instance)
    instance.start(0, 100)
    instance.start(1, 101)
    outcome = instance.control(1).unload("m")
    assert (outcome.ok, outcome.generation, outcome.workers, outcome.failures) == (True, 1, 2, [])
    assert [registry.state.generation for _, registry, _ in instance.workers.values()] == [1, 1]
    assert instance.table.generation == 1 and [slot.applied for slot in instance.table.read()] == [1, 1]
    assert read_state(runtime).models == {"m": {"unloaded": True, "config": None}}
    results = json.loads((runtime / "results" / "100.json").read_text())
    assert results == {"generation": 1, "models": {"m": {"1": {"state": "END", "error": "unloaded through the API"}}}}
    assert instance.control(0).load("m").generation == 2
    assert read_state(runtime).models == {}  # a load clears the unload
    assert [registry.state.generation for _, registry, _ in instance.workers.values()] == [2, 2]


def test_a_worker_started_later_comes_up_in_the_state_the_api_last_set(model_dir, runtime, instances):
    instance = Instance(model_dir, runtime)
    instances.append(instance)
    instance.start(0, 100)
    instance.control().unload("m")
    instance.live.discard(1)
    instance.start(1, 201)  # gunicorn replaced a worker
    registry = instance.workers[1][1]
    assert registry.state.overrides()["m"].unloaded  # planned from the file at start
    assert instance.control().load("m").workers == 2  # and it follows the next change
    assert registry.state.models == {}


def test_a_version_failed_in_one_worker_answers_model_load_failed_naming_it(model_dir, runtime, instances):
    instance = Instance(model_dir, runtime)
    instances.append(instance)
    instance.start(0, 100)
    instance.start(1, 101)
    with pytest.raises(errors.ModelLoadFailed) as raised:
        instance.control().load("m", {"max_batch_size": 13})
    assert raised.value.status == 400 and raised.value.code == "model_load_failed"
    assert raised.value.details["failures"] == [
        {"worker": pid, "model": "m", "version": 1, "error": "this version cannot be loaded"} for pid in (100, 101)]
    assert raised.value.message == ("model 'm' failed to load: version 1 in worker 100: this version cannot be "
                                    "loaded; version 1 in worker 101: this version cannot be loaded")
    rows = instance.control().index()
    assert rows == [{"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "this version cannot be loaded"}]


def test_a_worker_that_does_not_carry_the_change_out_is_named_in_a_504(model_dir, runtime, instances):
    instance = Instance(model_dir, runtime, timeout=0.5)
    instances.append(instance)
    instance.start(0, 100)
    stuck = Registry(stuck=True)
    instance.start(1, 101, stuck)
    with pytest.raises(errors.DeadlineExceeded) as raised:
        instance.control().unload("m")
    assert raised.value.status == 504 and raised.value.details["workers"] == [101]
    assert raised.value.message == "model 'm': worker(s) 101 did not carry out generation 1 within 0.5 s"
    assert raised.value.details["generation"] == 1


def test_a_slot_claimed_by_a_worker_not_yet_published_is_waited_for(model_dir, runtime, instances):
    instance = Instance(model_dir, runtime, timeout=0.3)
    instances.append(instance)
    instance.start(0, 100)
    instance.live.add(2)  # a worker has claimed slot 2 and is still starting
    with pytest.raises(errors.DeadlineExceeded) as raised:
        instance.control().unload("m")
    assert raised.value.details["workers"] == ["starting (slot 2)"]


def test_a_dead_worker_is_not_waited_for(model_dir, runtime, instances):
    instance = Instance(model_dir, runtime, timeout=30)
    instances.append(instance)
    instance.start(0, 100)
    instance.start(1, 101, Registry(stuck=True))
    instance.live.discard(1)  # killed: gunicorn has not started its replacement yet
    assert instance.control().unload("m").workers == 1


def test_a_bad_config_or_an_unknown_model_changes_nothing(model_dir, runtime, instances):
    instance = Instance(model_dir, runtime)
    instances.append(instance)
    instance.start(0, 100)
    control = instance.control()
    with pytest.raises(errors.InvalidRequest) as raised:
        control.load("m", {"max_batch_size": 0})
    assert "max_batch_size" in raised.value.message and raised.value.details["model"] == "m"
    with pytest.raises(errors.InvalidRequest):
        control.load("m", {"no_such_key": 1})
    with pytest.raises(errors.InvalidRequest):
        control.load("m", ["not", "an", "object"])  # type: ignore[arg-type]
    for name in ("missing", "..", ".hidden", "m/1"):
        with pytest.raises(errors.ModelNotFound):
            control.unload(name)
    assert read_state(runtime) == ControlState() and instance.table.generation == 0
    assert control.unload("flat").ok  # a flat model file is a model too


def test_local_control_applies_to_its_registry_and_raises_the_same_errors(model_dir):
    registry = Registry()
    control = LocalControl(registry, load_settings({"MODEL_DIR": model_dir}), lambda state: state)
    assert control.unload("m").generation == 1 and registry.state.overrides()["m"].unloaded
    assert control.index() == [{"name": "m", "version": "1", "state": "UNAVAILABLE",
                                "reason": "unloaded through the API"}]
    assert control.load("m").generation == 2 and registry.state.models == {}
    with pytest.raises(errors.ModelLoadFailed):
        control.load("m", {"max_batch_size": 13})
    with pytest.raises(errors.ModelNotFound):
        control.load("missing")


def test_the_control_file_is_replaced_whole_under_the_lock_with_the_next_generation(runtime):
    seen = []
    for _ in range(2):
        state = update_state(runtime, lambda models: models.update(m={"unloaded": True, "config": None}), seen.append)
    assert seen == [1, 2] and state.generation == 2
    assert sorted(path.name for path in runtime.iterdir()) == ["control.json", "control.lock", "results"]
    with pytest.raises(RuntimeError):  # a change that fails writes nothing
        update_state(runtime, lambda models: (_ for _ in ()).throw(RuntimeError("no")), seen.append)
    assert read_state(runtime).generation == 2 and seen == [1, 2]


def test_concurrent_writers_in_threads_never_lose_a_generation(runtime):
    def writer(index: int) -> None:
        for step in range(20):
            entry = {f"m{index}": {"unloaded": bool(step % 2), "config": None}}
            update_state(runtime, lambda models, entry=entry: models.update(entry), lambda _: None)
    threads = [threading.Thread(target=writer, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = read_state(runtime)
    assert state.generation == 80 and sorted(state.models) == ["m0", "m1", "m2", "m3"]


def test_the_master_empties_a_named_runtime_folder_and_removes_one_it_made(tmp_path, monkeypatch):
    named = tmp_path / "named"
    (named / "results").mkdir(parents=True)
    (named / "control.json").write_text('{"generation": 5, "models": {}}')
    (named / "results" / "1.json").write_text("{}")
    monkeypatch.setenv(control_state.VARIABLE, str(named))
    assert control_state.prepare_runtime() == named
    assert read_state(named) == ControlState() and list((named / "results").iterdir()) == []
    monkeypatch.delenv(control_state.VARIABLE)
    made = control_state.prepare_runtime()
    assert made.is_dir() and control_state.VARIABLE in os.environ
    control_state.remove_made_runtime()
    assert not made.exists()


def test_local_control_unloads_and_reloads_a_real_model_in_this_process(tmp_path):
    from app import create_app
    from tests import model_builders

    model_builders.dense(tmp_path / "m" / "1" / "model.keras")
    app = create_app({"TESTING": True, "MODEL_DIR": tmp_path})
    registry, control = app.extensions["registry"], app.extensions["control"]

    def predict():
        return app.test_client().post("/predict", json={"model": "m", "instances": [[0.1] * 4]})

    try:
        assert isinstance(control, LocalControl) and registry.wait_until_settled(120)
        assert control.unload("m").ok
        assert [(v.version, v.state) for v in registry.versions()] == [(1, ModelState.END)]
        assert predict().status_code in (404, 503)
        assert control.load("m", {"max_batch_size": 4}).generation == 2
        assert [(v.version, v.state, v.source.batching.max_batch_size) for v in registry.versions()] == \
            [(1, ModelState.AVAILABLE, 4)]
        assert predict().status_code == 200
    finally:
        app.extensions["watcher"].stop()
        registry.close()
