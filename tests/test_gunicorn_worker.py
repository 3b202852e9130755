"""The worker's accept balancing rule (the end-to-end test of the worker is in tests/e2e)."""
from __future__ import annotations

from app.gunicorn_worker import TOLERANCE, should_defer


def test_a_worker_over_its_share_lets_the_least_loaded_one_accept():
    assert should_defer(own=TOLERANCE + 1, others=[0, 5])
    assert should_defer(own=20, others=[10])


def test_a_worker_within_its_share_accepts_at_once():
    assert not should_defer(own=TOLERANCE, others=[0])
    assert not should_defer(own=8, others=[8, 9])


def test_the_only_live_worker_accepts_at_once():
    assert not should_defer(own=50, others=[])
