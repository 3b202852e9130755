"""A servable version: one version of one model, its state and, once AVAILABLE, its batcher (no TensorFlow)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.serving.batching import Batcher
from app.serving.types import ModelSource, ModelState, Signature


@dataclass
class ServableVersion:
    """One version: its source, state and, once AVAILABLE, its batcher.

    The loader moves it from LOADING to AVAILABLE or FAILED (with `error`) and then sets `settled`; the
    manager (`app.serving.manager`) moves it on to UNLOADING and END (with why) when it is not aspired any more."""

    source: ModelSource
    state: ModelState = ModelState.LOADING
    error: str | None = None
    signature: Signature | None = None
    batcher: Batcher | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    keras_model: Any = field(default=None, repr=False)  # kept only for a Keras file: explanations need gradients
    explainer: Any = field(default=None, repr=False)  # built on the first explanation (app.serving.explain_lane)
    settled: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def name(self) -> str:
        """The model's name."""
        return self.source.name

    @property
    def version(self) -> int:
        """The version number."""
        return self.source.version

    def summary(self) -> dict[str, Any]:
        """State for `GET /models`: version, state and, when FAILED, the reason."""
        out: dict[str, Any] = {"version": self.version, "state": self.state.value}
        if self.error:
            out["error"] = self.error
        return out

    def describe(self, model_dir: Path) -> dict[str, Any]:
        """Everything known about this version, for `GET /models/NAME[/versions/V]`; paths relative to `model_dir`."""
        out = self.summary()
        out["source"] = relative_path(self.source.path, model_dir)
        out["settings_file"] = relative_path(self.source.config_path, model_dir)
        out["custom_objects"] = relative_path(self.source.custom_objects_path, model_dir)
        if self.state is ModelState.END:  # not aspired, or unloaded: nothing runs
            return out
        out.update(self.metadata)
        if self.signature is not None:
            out["inputs"] = [spec.to_dict() for spec in self.signature.inputs]
            out["outputs"] = [spec.to_dict() for spec in self.signature.outputs]
        out["batching"] = self.source.batching.to_dict()
        if self.batcher is not None:
            out["stats"] = self.batcher.stats()
        return out


def relative_path(path: Path | None, model_dir: Path) -> str | None:
    """`path` relative to the model folder, in `/` form (only its name if it lies elsewhere): no server path leaks."""
    if path is None:
        return None
    try:
        return path.relative_to(model_dir).as_posix()
    except ValueError:
        return path.name


# A loader brings one servable version from LOADING to AVAILABLE or FAILED; it never raises.
Loader = Callable[[ServableVersion], None]

