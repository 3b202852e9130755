"""The manager (issue #20): apply() loads, swaps and unloads in its lifecycle thread; no request fails for it."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app import errors
from app.serving.batching import Batcher
from app.serving.registry import ModelRegistry
from app.serving.servable import ServableVersion
from app.serving.types import BatchingSettings, ModelPlan, ModelSource, ModelState
from app.serving.unload import RETIRED

SETTINGS = BatchingSettings(max_batch_size=8, max_batch_delay_ms=1, max_queue_rows=4096, request_timeout=30)
AVAILABLE, LOADING, FAILED, UNLOADING, END = (ModelState.AVAILABLE, ModelState.LOADING, ModelState.FAILED,
                                              ModelState.UNLOADING, ModelState.END)


def source(version: int, name: str = "m", safe_mode: bool = True) -> ModelSource:
    return ModelSource(name, version, Path(f"/m/{name}/{version}/m.keras"), SETTINGS, safe_mode=safe_mode)


def plan(*versions: int, name: str = "m", labels: dict | None = None, default: int | None = None,
         not_aspired: tuple = (), safe_mode: bool = True) -> dict[str, ModelPlan]:
    return {name: ModelPlan(name, tuple(source(v, name, safe_mode) for v in versions), not_aspired,
                            labels or {}, default)}


class FakeLoader:
    """Makes a version AVAILABLE with a real Batcher whose pass answers its version (slowly, 2 ms);
    versions in `gates` wait for their event first, versions in `fail` fail."""

    def __init__(self) -> None:
        self.gates: dict[int, threading.Event] = {}
        self.fail: set[int] = set()
        self.loaded: list[tuple[str, int]] = []
        self.batchers: list[Batcher] = []

    def __call__(self, servable: ServableVersion) -> None:
        self.loaded.append((servable.name, servable.version))
        gate = self.gates.get(servable.version)
        if gate is not None:
            assert gate.wait(30)
        if servable.version in self.fail:
            raise RuntimeError("cannot load")
        version = servable.version

        def forward(arrays):
            time.sleep(0.002)
            return {"version": np.full((len(arrays["x"]), 1), version)}

        servable.batcher = Batcher(forward, SETTINGS, name=servable.name, version=version)
        self.batchers.append(servable.batcher)
        servable.keras_model = object()
        servable.state = AVAILABLE


def until(condition, timeout: float = 20.0) -> bool:
    """Poll `condition` (an error counts as not yet: apply() works in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except errors.ServingError:
            pass
        time.sleep(0.01)
    return False


def predict(registry: ModelRegistry, **kwargs) -> int:
    servable = registry.resolve("m", **kwargs)
    out = servable.batcher.submit({"x": np.zeros((1, 4), np.float32)}, 1)
    assert int(out["version"][0, 0]) == servable.version
    return servable.version


@pytest.fixture
def loader() -> FakeLoader:
    return FakeLoader()


@pytest.fixture
def registry(loader):
    made = ModelRegistry.from_plans(plan(1), loader)
    assert made.wait_until_settled(30)
    yield made
    made.close()


def test_a_new_version_loads_while_the_old_one_serves_and_takes_the_default_once_available(registry, loader):
    loader.gates[2] = gate = threading.Event()
    registry.apply(plan(1, 2))
    assert until(lambda: registry.get("m", 2).state is LOADING)
    assert predict(registry) == 1 and not registry.wait_applied(0.05)
    gate.set()
    assert registry.wait_applied(30)
    assert until(lambda: registry.resolve("m").version == 2)
    assert predict(registry, version=1) == 1


def test_a_removed_version_is_rerouted_at_once_then_drained_and_unloaded(registry, loader):
    registry.apply(plan(1, 2))
    assert registry.wait_applied(30) and until(lambda: registry.resolve("m").version == 2)
    old = registry.get("m", 2)
    batcher = old.batcher
    started = time.monotonic()
    registry.apply(plan(1, not_aspired=((2, "outside the version policy"),)))
    assert until(lambda: old.state is not AVAILABLE)
    assert registry.resolve("m").version == 1
    assert registry.wait_applied(30)
    assert time.monotonic() - started >= 1.0  # the grace
    assert old.state is END and old.error == "outside the version policy"
    assert old.batcher is RETIRED and old.keras_model is None and old.explainer is None
    assert batcher._closed
    with pytest.raises(errors.ModelNotAvailable):
        registry.resolve("m", 2)
    assert [(v.version, v.state) for v in registry.model_versions("m")] == [(1, AVAILABLE), (2, END)]
    assert registry.readiness() == (True, [])
    assert registry.instance_readiness().ready


def test_changed_settings_load_a_fresh_servable_swapped_in_once_available(registry, loader):
    old = registry.get("m", 1)
    loader.gates[1] = gate = threading.Event()
    registry.apply(plan(1, safe_mode=False))
    assert until(lambda: len(loader.loaded) == 2)
    assert registry.resolve("m") is old and predict(registry) == 1  # the old one serves meanwhile
    gate.set()
    assert registry.wait_applied(30)
    fresh = registry.get("m", 1)
    assert fresh is not old and fresh.source.safe_mode is False and registry.resolve("m") is fresh
    assert old.state is END and old.batcher is RETIRED


def test_a_reload_that_fails_leaves_the_old_servable_serving_with_the_reason(registry, loader):
    old = registry.get("m", 1)
    loader.fail.add(1)
    registry.apply(plan(1, safe_mode=False))
    assert registry.wait_applied(30)
    assert registry.get("m", 1) is old and old.state is AVAILABLE and predict(registry) == 1
    assert old.error == "reload failed: RuntimeError: cannot load"


def test_labels_route_to_their_versions_and_unknown_labels_are_404(registry, loader):
    registry.apply(plan(1, 2, labels={"stable": 1, "canary": 2}, default=1))
    assert registry.wait_applied(30)
    assert until(lambda: registry.resolve("m", label="canary").version == 2)
    assert predict(registry, label="stable") == 1 and predict(registry) == 1
    with pytest.raises(errors.LabelNotFound) as caught:
        registry.resolve("m", label="beta")
    assert caught.value.status == 404 and caught.value.details["labels"] == ["canary", "stable"]
    with pytest.raises(errors.InvalidRequest):
        registry.resolve("m", version=1, label="stable")


def test_a_label_moved_to_a_loading_version_keeps_its_old_target_until_that_one_is_available(registry, loader):
    registry.apply(plan(1, labels={"stable": 1}))
    assert registry.wait_applied(30) and until(lambda: registry.resolve("m", label="stable").version == 1)
    loader.gates[2] = gate = threading.Event()
    registry.apply(plan(1, 2, labels={"stable": 2}, default=1))
    assert until(lambda: registry.get("m", 2).state is LOADING)
    assert registry.resolve("m", label="stable").version == 1
    gate.set()
    assert until(lambda: registry.resolve("m", label="stable").version == 2)


def test_a_label_on_a_version_never_available_is_503_naming_label_and_version(registry, loader):
    loader.fail.add(2)
    registry.apply(plan(1, 2, labels={"canary": 2}))
    assert registry.wait_applied(30)
    with pytest.raises(errors.ModelNotAvailable) as caught:
        registry.resolve("m", label="canary")
    assert caught.value.details == {"model": "m", "label": "canary", "version": 2, "state": "FAILED",
                                    "reason": "RuntimeError: cannot load"}
    assert "canary" in caught.value.message and "2" in caught.value.message


def test_a_route_waits_until_the_version_is_available_in_every_worker(registry, loader):
    class Instance:
        everywhere: set[tuple[str, int]] = {("m", 1)}

        def available_everywhere(self, name, version):
            return (name, version) in self.everywhere

        def publish(self, *args):
            pass

    instance = Instance()
    registry.attach_instance(instance)
    registry.apply(plan(1, 2))
    assert registry.wait_applied(30) and registry.get("m", 2).state is AVAILABLE
    time.sleep(0.2)
    assert registry.resolve("m").version == 1 and registry.route("m").pending
    instance.everywhere.add(("m", 2))  # the lifecycle thread re-checks a pending route every ~50 ms
    assert until(lambda: registry.resolve("m").version == 2)


def test_not_aspired_versions_are_listed_end_with_why_and_never_loaded(loader):
    registry = ModelRegistry.from_plans(plan(2, not_aspired=((1, "outside the version policy"),)), loader)
    try:
        assert registry.wait_until_settled(30)
        assert loader.loaded == [("m", 2)]
        assert registry.get("m", 1).summary() == {"version": 1, "state": "END", "error": "outside the version policy"}
        assert registry.readiness() == (True, []) and registry.instance_readiness().ready
    finally:
        registry.close()


def test_a_version_loading_after_the_first_settle_does_not_turn_readiness_503_but_is_listed(registry, loader):
    loader.gates[2] = gate = threading.Event()
    registry.apply(plan(1, 2))
    assert until(lambda: registry.get("m", 2).state is LOADING)
    answer = registry.instance_readiness()
    assert answer.ready and answer.details()["not_ready"] == [{"model": "m", "version": 2, "state": "LOADING"}]
    gate.set()
    assert registry.wait_applied(30)


def test_a_model_gone_from_the_plans_is_unloaded_then_unknown(registry, loader):
    registry.apply({})
    assert until(lambda: registry.get("m", 1).state is not AVAILABLE)
    assert registry.wait_applied(30)
    with pytest.raises(errors.ModelNotFound):
        registry.resolve("m")


def test_requests_hammering_while_versions_swap_and_unload_see_no_error(registry, loader):
    failures: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                seen.add(predict(registry))
            except BaseException as exc:  # noqa: BLE001 - every failure is the test's finding
                failures.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for step in (plan(1, 2), plan(1), plan(1, 2, default=1), plan(1, 2, safe_mode=False), plan(2), plan(3, 2)):
            registry.apply(step)
            assert registry.wait_applied(30)
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert seen == {1, 2, 3}
    assert [(v.version, v.state) for v in registry.model_versions("m")] == [(1, END), (2, AVAILABLE), (3, AVAILABLE)]


def test_an_unload_waits_for_the_work_in_flight_and_every_request_is_answered(loader):
    release = threading.Event()

    def slow_loader(servable: ServableVersion) -> None:
        def forward(arrays):
            assert release.wait(30)
            return {"version": np.full((len(arrays["x"]), 1), servable.version)}

        servable.batcher = Batcher(forward, SETTINGS, name="m", version=servable.version)
        servable.state = AVAILABLE

    registry = ModelRegistry.from_plans(plan(1, 2), slow_loader)
    try:
        assert registry.wait_until_settled(30) and until(lambda: registry.resolve("m").version == 2)
        answers: list[int] = []
        threads = [threading.Thread(target=lambda: answers.append(predict(registry))) for _ in range(6)]
        for thread in threads:
            thread.start()
        leaving = registry.get("m", 2)
        assert until(lambda: leaving.batcher.stats()["queued_requests"] >= 1)
        registry.apply(plan(1))
        time.sleep(1.5)  # past the grace: still draining, its work is not done
        assert leaving.state is UNLOADING and not registry.wait_applied(0)
        release.set()
        for thread in threads:
            thread.join(30)
        assert answers == [2] * 6
        assert registry.wait_applied(30) and leaving.state is END
    finally:
        release.set()
        registry.close()


def test_a_load_an_unload_and_a_label_change_are_one_log_line_each_with_their_fields(registry, caplog):
    caplog.set_level("INFO", logger="app.serving.manager")
    registry.apply(plan(1, 2, labels={"canary": 2}, default=1))
    assert registry.wait_applied(30) and until(lambda: registry.resolve("m", label="canary").version == 2)
    registry.apply(plan(1))
    assert registry.wait_applied(30)
    lines = [(r.event, r.model, r.version) for r in caplog.records if r.name == "app.serving.manager"]
    assert lines == [("loaded", "m", 2), ("label", "m", 2), ("unloaded", "m", 2)]
    for record in caplog.records:
        assert record.worker == os.getpid() and isinstance(record.duration_s, float)


def test_a_settled_callback_may_apply_and_wait_for_it(loader):
    registry = ModelRegistry.from_plans(plan(1), loader)
    done = threading.Event()

    def follow_up():
        registry.apply(plan(1, 2))
        assert registry.wait_applied(30)
        done.set()

    registry.when_settled(follow_up)
    try:
        assert registry.wait_until_settled(30) and done.wait(30)
        assert registry.get("m", 2).state is AVAILABLE
        ran = []
        registry.when_settled(lambda: ran.append(1))  # already settled: at once, once
        assert ran == [1]
    finally:
        registry.close()


def test_state_changes_are_published_but_a_reload_does_not_mark_its_version_end(loader):
    published: list[tuple[str, int, ModelState]] = []
    registry = ModelRegistry.from_plans(plan(1, 2), loader, on_state=lambda *change: published.append(change))
    try:
        assert registry.wait_until_settled(30)
        registry.apply(plan(1, safe_mode=False))  # version 1 reloaded, version 2 unloaded
        assert registry.wait_applied(30)
        assert published == [("m", 2, UNLOADING), ("m", 2, END)]
        assert registry.get("m", 1).state is AVAILABLE
    finally:
        registry.close()


def test_a_version_removed_while_it_loads_ends_end_with_why_and_is_never_routed(registry, loader):
    loader.gates[2] = gate = threading.Event()
    registry.apply(plan(1, 2))
    assert until(lambda: registry.get("m", 2).state is LOADING and loader.loaded[-1] == ("m", 2))
    registry.apply(plan(1, not_aspired=((2, "unloaded through the API"),)))
    time.sleep(0.1)
    gate.set()
    assert registry.wait_applied(30)
    assert registry.get("m", 2).summary() == {"version": 2, "state": "END", "error": "unloaded through the API"}
    assert registry.resolve("m").version == 1


def test_real_keras_versions_swap_and_unload_under_load_with_no_error(tmp_path):
    from app.serving.lazy_loader import TensorFlowLoader
    from tests import model_builders

    paths = {v: model_builders.dense(tmp_path / "m" / str(v) / "model.keras", seed=v) for v in (1, 2)}

    def real(*versions: int, safe_mode: bool = True) -> dict[str, ModelPlan]:
        return {"m": ModelPlan("m", tuple(ModelSource("m", v, paths[v], SETTINGS, safe_mode=safe_mode)
                                          for v in versions))}

    registry = ModelRegistry.from_plans(real(1), TensorFlowLoader())
    failures: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                servable = registry.resolve("m")
                servable.batcher.submit({"features": np.zeros((1, 4), np.float32)}, 1)
                seen.add(servable.version)
            except BaseException as exc:  # noqa: BLE001 - every failure is the test's finding
                failures.append(exc)

    try:
        assert registry.wait_until_settled(120)
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        retired = []
        for step in (real(1, 2), real(1, 2, safe_mode=False), real(1)):
            before = registry.get("m", 2) if registry.route("m").default.version == 2 else None
            registry.apply(step)
            assert registry.wait_applied(120)
            retired += [before] if before is not None else []
        stop.set()
        for thread in threads:
            thread.join(60)
        assert failures == [] and seen == {1, 2}
        assert retired and all(s.state is END and s.keras_model is None and s.batcher is RETIRED for s in retired)
    finally:
        stop.set()
        registry.close()


def test_settings_read_from_elsewhere_but_equal_reload_nothing(registry, loader):
    held = registry.get("m", 1)
    moved = ModelSource("m", 1, held.source.path, SETTINGS, config_path=None)
    overridden = ModelSource("m", 1, held.source.path, SETTINGS, config_path=Path("/m/m/serving.json"))
    registry.apply({"m": ModelPlan("m", (overridden,))})
    assert registry.wait_applied(30)
    registry.apply({"m": ModelPlan("m", (moved,))})
    assert registry.wait_applied(30)
    assert registry.get("m", 1) is held and held.source is moved and loader.loaded == [("m", 1)]


def test_a_gentle_load_runs_at_a_lower_priority_with_a_short_switch_interval_and_restores_it():
    import os
    import sys
    import threading

    from app.serving.load_queue import GENTLE_SWITCH_INTERVAL, gentle_thread

    before, seen = sys.getswitchinterval(), {}

    def load() -> None:
        base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        with gentle_thread():
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) - base
            seen["interval"] = sys.getswitchinterval()

    thread = threading.Thread(target=load)
    thread.start()
    thread.join()
    assert seen["interval"] == GENTLE_SWITCH_INTERVAL and sys.getswitchinterval() == before
    assert seen["nice"] > 0 or os.getpriority(os.PRIO_PROCESS, 0) >= 19
