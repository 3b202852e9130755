"""The version policy applied to the versions found on disk, and the control API's override of one model."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.serving.model_settings import ModelSettings, VersionPolicy

UNLOADED = "unloaded through the model control API"


@dataclass(frozen=True)
class ModelOverride:
    """What the control API set for one model: unloaded (no version aspired), or a serving.json to use instead."""

    unloaded: bool = False
    config: ModelSettings | None = None  # replaces the model's serving.json (the whole document) until the next load


def aspired_versions(policy: VersionPolicy, found: Iterable[int]) -> tuple[list[int], list[tuple[int, str]]]:
    """Split the version numbers found into (aspired, [(not aspired, why)]), each lowest first."""
    versions = sorted(set(found))
    if policy.latest is not None:
        keep = set(versions[-policy.latest.num_versions:])
    elif policy.specific is not None:
        keep = set(policy.specific.versions)
    else:
        keep = set(versions)
    why = f"outside the version policy {policy}"
    return [v for v in versions if v in keep], [(v, why) for v in versions if v not in keep]


def missing_versions(policy: VersionPolicy, found: Iterable[int]) -> list[int]:
    """Versions a `specific` policy lists that are not on disk (absent from the plan)."""
    if policy.specific is None:
        return []
    present = set(found)
    return sorted(v for v in set(policy.specific.versions) if v not in present)
