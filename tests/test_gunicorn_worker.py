"""The worker's accept balancing rule (the end-to-end test of the worker is in tests/e2e)."""
from __future__ import annotations

from app.gunicorn_worker import MAX_DEFER_S, TOLERANCE, should_defer


def test_a_worker_over_its_share_lets_the_least_loaded_one_accept():
    assert should_defer(own=TOLERANCE + 1, others=[0, 5], deferring_for=0.0)
    assert should_defer(own=20, others=[10], deferring_for=MAX_DEFER_S / 2)


def test_a_worker_within_its_share_accepts_at_once():
    assert not should_defer(own=TOLERANCE, others=[0], deferring_for=0.0)
    assert not should_defer(own=8, others=[8, 9], deferring_for=0.0)


def test_alone_or_after_waiting_long_enough_a_worker_accepts_whatever_the_others_hold():
    assert not should_defer(own=50, others=[], deferring_for=0.0)  # the only live worker
    assert not should_defer(own=50, others=[0], deferring_for=MAX_DEFER_S)  # a stuck worker holds nothing back
