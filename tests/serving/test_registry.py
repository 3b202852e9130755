"""The registry (manager): which servable answers a request, and readiness, by version state."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app import errors
from app.serving.registry import ModelRegistry
from app.serving.servable import ServableVersion
from app.serving.types import BatchingSettings, ModelSource, ModelState

SETTINGS = BatchingSettings(max_batch_size=8, max_batch_delay_ms=0, max_queue_rows=64, request_timeout=5)


def _sources(spec: dict[str, dict[int, ModelState]]) -> list[ModelSource]:
    return [ModelSource(name, version, Path(f"/m/{name}/{version}/m.keras"), SETTINGS)
            for name, versions in spec.items() for version in versions]


def refuse_to_load(servable: ServableVersion) -> None:
    raise AssertionError("_registry sets the states itself: nothing may be loaded")


def _registry(spec: dict[str, dict[int, ModelState]], **kwargs) -> ModelRegistry:
    registry = ModelRegistry(_sources(spec), refuse_to_load, **kwargs)
    for servable in registry.versions():
        servable.state = spec[servable.name][servable.version]
        if servable.state is ModelState.AVAILABLE:
            servable.batcher = object()  # stands in for a loaded batcher; never called here
        if servable.state is not ModelState.LOADING:
            servable.settled.set()
    registry._settled.set()
    return registry


AVAILABLE, LOADING, FAILED = ModelState.AVAILABLE, ModelState.LOADING, ModelState.FAILED


def test_default_version_is_the_highest_available():
    registry = _registry({"m": {1: AVAILABLE, 2: AVAILABLE, 3: FAILED}})
    assert registry.resolve("m", None).version == 2
    assert registry.resolve("m", 1).version == 1


def test_unknown_model_and_version_are_404():
    registry = _registry({"m": {1: AVAILABLE}})
    with pytest.raises(errors.ModelNotFound):
        registry.resolve("x", None)
    with pytest.raises(errors.VersionNotFound):
        registry.resolve("m", 5)


def test_failed_version_is_503_with_its_reason():
    registry = _registry({"m": {1: FAILED}})
    registry.get("m", 1).error = "weights only"
    with pytest.raises(errors.ModelNotAvailable) as caught:
        registry.resolve("m", None)
    assert caught.value.details["reason"] == "weights only"


def test_model_is_optional_with_one_model_or_a_default():
    assert _registry({"only": {1: AVAILABLE}}).resolve(None, None).name == "only"
    two = {"a": {1: AVAILABLE}, "b": {1: AVAILABLE}}
    with pytest.raises(errors.InvalidRequest):
        _registry(two).resolve(None, None)
    assert _registry(two, default_model="b").resolve(None, None).name == "b"


def test_a_request_for_a_loading_version_waits_for_it():
    registry = _registry({"m": {1: LOADING}}, loading_wait=5)
    servable = registry.get("m", 1)

    def finish_loading():
        time.sleep(0.2)
        servable.batcher = object()
        servable.state = AVAILABLE
        servable.settled.set()

    threading.Thread(target=finish_loading).start()
    assert registry.resolve("m", None) is servable


def test_a_version_still_loading_after_the_wait_is_503():
    registry = _registry({"m": {1: LOADING}}, loading_wait=0.05)
    with pytest.raises(errors.ModelNotAvailable, match="LOADING"):
        registry.resolve("m", 1)


def test_readiness_names_what_is_not_available():
    strict = _registry({"a": {1: AVAILABLE}, "b": {1: FAILED, 2: LOADING}})
    ready, blocking = strict.readiness()
    assert not ready
    assert [(b["model"], b["version"], b["state"]) for b in blocking] == [("b", 1, "FAILED"), ("b", 2, "LOADING")]
    lenient = _registry({"a": {1: AVAILABLE}, "b": {1: FAILED}}, strict_readiness=False)
    assert lenient.readiness() == (True, [])


class RecordingLoader:
    """A loader that makes every version AVAILABLE (or FAILED for `fail`) and records the order."""

    def __init__(self, fail: set[tuple[str, int]] = frozenset()):
        self.loaded: list[tuple[str, int]] = []
        self.fail = fail

    def __call__(self, servable: ServableVersion) -> None:
        self.loaded.append((servable.name, servable.version))
        if (servable.name, servable.version) in self.fail:
            raise RuntimeError("the loader\nbroke")
        servable.batcher = object()
        servable.state = AVAILABLE


def test_the_manager_gives_every_aspired_version_to_its_loader_in_order():
    loader = RecordingLoader()
    registry = ModelRegistry(_sources({"b": {2: LOADING, 1: LOADING}, "a": {1: LOADING}}), loader)
    assert registry.wait_until_settled(30)
    assert loader.loaded == [("a", 1), ("b", 1), ("b", 2)]
    assert registry.readiness() == (True, [])
    assert registry.resolve("b", None).version == 2


def test_nothing_loads_until_loading_is_started_or_waited_for():
    loader = RecordingLoader()
    registry = ModelRegistry(_sources({"m": {1: LOADING}}), loader)
    assert registry.names() == ["m"] and registry.get("m", 1).state is LOADING
    assert loader.loaded == [] and registry.readiness()[0] is False
    registry.start_loading()
    registry.start_loading()
    assert registry.wait_until_settled(30) and loader.loaded == [("m", 1)]


def test_a_loader_that_raises_leaves_the_version_failed_with_a_one_line_reason():
    registry = ModelRegistry(_sources({"m": {1: LOADING, 2: LOADING}}), RecordingLoader(fail={("m", 2)}))
    assert registry.wait_until_settled(30)
    failed = registry.get("m", 2)
    assert failed.state is FAILED and failed.error == "RuntimeError: the loader broke"
    assert registry.resolve("m", None).version == 1
