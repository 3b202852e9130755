"""Routes (issue #20): the precomputed target of default and label requests, kept until a new one is routable."""
from __future__ import annotations

from pathlib import Path

from app.serving.routes import Route, compute_route, compute_routes
from app.serving.servable import ServableVersion
from app.serving.types import BatchingSettings, ModelPlan, ModelSource, ModelState

SETTINGS = BatchingSettings(max_batch_size=8, max_batch_delay_ms=0, max_queue_rows=64, request_timeout=5)


def servable(version: int, state: ModelState = ModelState.AVAILABLE) -> ServableVersion:
    made = ServableVersion(ModelSource("m", version, Path(f"/m/{version}/m.keras"), SETTINGS), state=state)
    made.batcher = object() if state is ModelState.AVAILABLE else None
    return made


def plan(*versions: int, labels: dict | None = None, default: int | None = None) -> ModelPlan:
    return ModelPlan("m", tuple(servable(v).source for v in versions), (), labels or {}, default)


def available(servable: ServableVersion) -> bool:
    return servable.state is ModelState.AVAILABLE


def test_the_default_is_the_highest_routable_version():
    held = {1: servable(1), 2: servable(2), 3: servable(3, ModelState.FAILED)}
    route = compute_route(plan(1, 2, 3), held, available, None)
    assert route.default is held[2] and not route.pending


def test_a_version_still_loading_leaves_the_default_on_the_old_one_and_the_route_pending():
    held = {1: servable(1), 2: servable(2, ModelState.LOADING)}
    route = compute_route(plan(1, 2), held, available, None)
    assert route.default is held[1] and route.pending


def test_a_version_available_here_but_not_everywhere_is_not_routed_yet():
    held = {1: servable(1), 2: servable(2)}
    route = compute_route(plan(1, 2), held, lambda s: s.version == 1, None)
    assert route.default is held[1] and route.pending


def test_default_version_pins_the_default():
    held = {1: servable(1), 2: servable(2)}
    assert compute_route(plan(1, 2, default=1), held, available, None).default is held[1]


def test_a_moved_label_keeps_its_old_target_until_the_new_one_is_routable():
    held = {1: servable(1), 2: servable(2, ModelState.LOADING)}
    before = compute_route(plan(1, 2, labels={"stable": 1}), held, available, None)
    moved = compute_route(plan(1, 2, labels={"stable": 2}), held, available, before)
    assert moved.labels["stable"] is held[1] and moved.pending and moved.label_versions() == {"stable": 1}
    held[2].state, held[2].batcher = ModelState.AVAILABLE, object()
    assert compute_route(plan(1, 2, labels={"stable": 2}), held, available, moved).labels["stable"] is held[2]


def test_a_label_with_no_routable_target_holds_its_version_number():
    held = {1: servable(1, ModelState.FAILED)}
    route = compute_route(plan(1, labels={"canary": 1}), held, available, Route())
    assert route.labels == {"canary": 1} and route.default is None and not route.pending


def test_compute_routes_leaves_out_versions_on_their_way_out():
    leaving = servable(2)
    leaving.state = ModelState.UNLOADING
    routes = compute_routes({"m": plan(1, 2)}, {"m": {1: servable(1), 2: leaving}}, available, {})
    assert routes["m"].default.version == 1
