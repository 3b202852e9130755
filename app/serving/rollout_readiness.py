"""Readiness during a rollout: once a model serves, its new versions loading do not turn readiness 503.

Before this worker first settled every aspired version counts (as at start). After it, a version LOADING
while its model's route has another routable default is a rollout's: the instance stays ready (the old
version serves) and the body still lists the version under `not_ready`. A model with no routable version,
a FAILED version (under strict readiness) or an instance-wide reason keep it 503.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.serving.readiness import Readiness
from app.serving.routes import Route
from app.serving.types import ModelState


class RolloutReadiness(Readiness):
    """Ready while a rollout's new versions load (the old ones serve): the body still lists them."""

    def details(self) -> dict[str, Any]:
        """The base body, plus the versions still loading."""
        return {"not_ready": self.not_ready, **super().details()}


def excuse_rollouts(answer: Readiness, routes: Mapping[str, Route], settled: bool) -> Readiness:
    """`answer`, made ready when all that holds it back is rollouts' versions loading."""
    if answer.ready or answer.reason or not answer.not_ready or not settled:
        return answer
    if all(rolling_out(entry, routes.get(entry["model"])) for entry in answer.not_ready):
        return RolloutReadiness(True, answer.not_ready, None, answer.workers)
    return answer


def rolling_out(entry: Mapping[str, Any], route: Route | None) -> bool:
    """Whether a version holding readiness back is a rollout's: LOADING while another version serves."""
    return (entry["state"] == ModelState.LOADING.value and route is not None and route.default is not None
            and route.default.version != entry["version"])
