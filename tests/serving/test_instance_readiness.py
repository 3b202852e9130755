"""The instance's readiness from the shared table (app/serving/readiness.py), workers written by hand."""
from __future__ import annotations

from app.serving.readiness import InstanceReadiness, ReadinessTable
from app.serving.types import ModelState

A, F, L = ModelState.AVAILABLE, ModelState.FAILED, ModelState.LOADING


def _workers(count: int = 2, live: set[int] | None = None) -> tuple[ReadinessTable, list[InstanceReadiness]]:
    table = ReadinessTable(slots=4)
    alive = set(range(count)) if live is None else live
    views = [InstanceReadiness(table, slot, 100 + slot, count, lambda slot, pid: slot in alive)
             for slot in range(count)]
    return table, views


def test_ready_only_once_every_worker_has_settled_with_every_version_available():
    table, (first, second) = _workers()
    first.publish(True, [("m", 1, A)], strict=True)
    answer = first.answer([("m", 1, A)], strict=True)
    assert not answer.ready and answer.reason == "1 of 2 workers have loaded their models"
    second.publish(False, [("m", 1, L)], strict=True)
    answer = first.answer([("m", 1, A)], strict=True)
    assert answer.not_ready == [{"model": "m", "version": 1, "state": "LOADING", "workers": 1}]
    assert answer.workers == {"expected": 2, "started": 2, "loaded": 1}
    second.publish(True, [("m", 1, A)], strict=True)
    assert first.answer([("m", 1, A)], strict=True).ready and table.ready_once


def test_failed_versions_hold_readiness_back_only_under_strict_readiness():
    _, (first, second) = _workers()
    for view in (first, second):
        view.publish(True, [("m", 1, A), ("m", 2, F)], strict=False)
    assert first.answer([("m", 1, A), ("m", 2, F)], strict=False).ready
    answer = first.answer([("m", 1, A), ("m", 2, F)], strict=True)
    assert answer.not_ready == [{"model": "m", "version": 2, "state": "FAILED", "workers": 2}]


def test_once_ready_a_loading_replacement_does_not_count_and_a_dead_worker_is_ignored():
    table, (first, second) = _workers(live={0, 1})
    for view in (first, second):
        view.publish(True, [("m", 1, A)], strict=True)
    second.publish(False, [("m", 1, L)], strict=True)  # the same slot, taken by a replacement loading
    answer = first.answer([("m", 1, A)], strict=True)
    assert answer.ready and answer.workers == {"expected": 2, "started": 2, "loaded": 1}
    _, (lone, dead) = _workers(live={0})
    lone.publish(True, [("m", 1, A)], strict=True)
    dead.publish(True, [("m", 1, F)], strict=True)
    assert lone.answer([("m", 1, A)], strict=True).workers == {"expected": 2, "started": 1, "loaded": 1}


def test_draining_no_model_and_workers_that_disagree_are_not_ready_with_a_reason():
    table, (first, second) = _workers()
    first.publish(True, [("m", 1, A)], strict=True)
    second.publish(True, [("other", 1, A)], strict=True)
    assert first.answer([("m", 1, A)], strict=True).reason == "1 worker(s) aspire other model versions than this one"
    assert first.answer([], strict=True).reason == "SERVING_MODEL_DIR holds no model"
    table.set_draining()
    answer = first.answer([("m", 1, A)], strict=True)
    assert not answer.ready and answer.reason == "shutting down (SIGTERM)"


def test_workers_whose_version_lists_differ_are_read_by_version_not_by_position():
    _, (first, second) = _workers()
    first.publish(True, [("m", 1, A), ("m", 2, A)], strict=True)
    second.publish(True, [("m", 0, L), ("m", 2, A), ("m", 1, A), ("m", 3, L)], strict=True)  # a rollout under way
    assert first.answer([("m", 1, A), ("m", 2, A)], strict=True).ready
    second.publish(True, [("m", 2, L), ("m", 1, A)], strict=True)
    answer = first.answer([("m", 1, A), ("m", 2, A)], strict=True)
    assert answer.not_ready == [{"model": "m", "version": 2, "state": "LOADING", "workers": 1}]


def test_end_versions_never_hold_readiness_back_in_any_worker():
    _, (first, second) = _workers()
    first.publish(True, [("m", 1, A), ("m", 2, ModelState.END)], strict=True)
    second.publish(True, [("m", 1, A), ("m", 2, A)], strict=True)  # has not applied the unload yet
    assert first.answer([("m", 1, A), ("m", 2, ModelState.END)], strict=True).ready
    assert second.answer([("m", 1, A), ("m", 2, A)], strict=True).ready


def test_available_everywhere_asks_every_live_settled_worker_and_ignores_one_still_loading():
    table, (first, second, third) = _workers(3, live={0, 1, 2})
    first.publish(True, [("m", 1, A), ("m", 2, A)], strict=True)
    second.publish(True, [("m", 1, A), ("m", 2, L)], strict=True)
    third.publish(False, [("m", 1, L)], strict=True)  # a replacement still loading: not asked
    assert first.available_everywhere("m", 1) and not first.available_everywhere("m", 2)
    second.publish(True, [("m", 1, A), ("m", 2, A)], strict=True)
    assert first.available_everywhere("m", 2) and not first.available_everywhere("m", 3)
    second.publish(True, [("m", 1, A), ("m", 2, ModelState.END)], strict=True)
    assert not third.available_everywhere("m", 2)


def test_no_settled_worker_means_nothing_is_available_everywhere():
    _, (first, _) = _workers()
    first.publish(False, [("m", 1, A)], strict=True)
    assert not first.available_everywhere("m", 1)


def test_a_slot_taken_by_a_new_worker_has_applied_no_control_generation_yet():
    table, (first, _) = _workers()
    first.publish(True, [("m", 1, A)], strict=True)
    first.publish_applied(7)
    assert [slot.applied for slot in table.read([0])] == [7]
    table.publish(0, 555, False, [("m", 1, L)], strict=True, expected=2)
    assert [(slot.pid, slot.applied) for slot in table.read([0])] == [(555, 0)]
    table.set_generation(9)
    assert table.generation == 9


def test_an_instance_whose_every_version_is_end_is_not_ready_and_says_why():
    from app.serving.readiness import NOTHING_ASPIRED, local_readiness
    from app.serving.types import ModelState

    answer = local_readiness([("m", 1, ModelState.END), ("m", 2, ModelState.END)], strict=True, settled=True)
    assert not answer.ready and answer.reason == NOTHING_ASPIRED
    assert local_readiness([("m", 1, ModelState.END), ("m", 2, ModelState.AVAILABLE)], True, True).ready
