"""The loader the server gives its manager: TensorFlow is imported on the first Keras load, not on import.

A `.tflite` version loads through LiteRT alone (`lifecycle.prepare_tflite`): a worker whose folder holds
only `.tflite` files never imports TensorFlow or Keras.

`create_app` builds the manager with it and stays fast: gunicorn forks its workers before any
TensorFlow exists, and the models load in each worker's background thread.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.serving.servable import ServableVersion


@dataclass(frozen=True)
class TensorFlowLoader:
    """Loads a servable version with `lifecycle.load_version`, importing TensorFlow on the first Keras file."""

    tf_threads: tuple[int, int] = (1, 1)  # intra-op, inter-op

    def __call__(self, servable: ServableVersion) -> None:
        """Load, compile and warm up `servable`; it ends AVAILABLE or FAILED with a reason."""
        from app.serving.lifecycle import load_version  # imports LiteRT; TensorFlow only for a Keras file

        load_version(servable, self.tf_threads)
