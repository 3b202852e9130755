"""The registry (manager): which servable answers a request, and readiness, by version state."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app import errors
from app.serving.registry import ModelRegistry
from app.serving.types import BatchingSettings, ModelSource, ModelState

SETTINGS = BatchingSettings(max_batch_size=8, max_batch_delay_ms=0, max_queue_rows=64, request_timeout=5)


def _registry(spec: dict[str, dict[int, ModelState]], **kwargs) -> ModelRegistry:
    sources = [ModelSource(name, version, Path(f"/m/{name}/{version}/m.keras"), SETTINGS)
               for name, versions in spec.items() for version in versions]
    registry = ModelRegistry(sources, **kwargs)
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
