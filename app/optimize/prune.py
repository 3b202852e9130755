"""Magnitude pruning of Dense and Conv kernels, applied in place before conversion (no fine-tuning).

tensorflow-model-optimization does not support Keras 3, so this is ours: the smallest weights by absolute value
become zeros until each kernel (scope `layer`) or all kernels together (scope `global`) hold exactly
round(sparsity x weights) zeros. Biases and other layers are left alone. Zeros make the file compress better;
TFLite's dense CPU kernels still multiply by them, so pruning alone does not make a call faster.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

PRUNABLE = frozenset({"Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                      "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D"})
SCOPES = ("layer", "global")


@dataclass(frozen=True)
class PrunedKernel:
    """One kernel after pruning: its layer, its weight count and how many of them are zero."""

    layer: str
    weights: int
    zeros: int

    def to_dict(self) -> dict[str, Any]:
        """For the report."""
        return {"layer": self.layer, "weights": self.weights, "zeros": self.zeros,
                "sparsity": round(self.zeros / self.weights, 6)}


def prunable_layers(model: Any) -> Iterator[Any]:
    """Every Dense or Conv layer with a kernel, nested models included, in model order."""
    for layer in getattr(model, "layers", ()):
        if type(layer).__name__ in PRUNABLE and getattr(layer, "kernel", None) is not None:
            yield layer
        elif getattr(layer, "layers", None):
            yield from prunable_layers(layer)


def prune(model: Any, sparsity: float, scope: str = "layer") -> list[PrunedKernel]:
    """Zero the smallest-magnitude kernel weights of `model` in place; what each kernel holds afterwards."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be at least 0 and below 1, not {sparsity}")
    layers = list(prunable_layers(model))
    if not layers:
        raise ValueError("the model has no Dense or Conv kernel to prune")
    kernels = [np.array(layer.kernel.numpy()) for layer in layers]
    if scope == "layer":
        masks = [_smallest(np.abs(kernel).ravel(), round(sparsity * kernel.size)) for kernel in kernels]
    else:
        flat = np.concatenate([np.abs(kernel).ravel() for kernel in kernels])
        masks = np.split(_smallest(flat, round(sparsity * flat.size)),
                         np.cumsum([kernel.size for kernel in kernels])[:-1])
    pruned = []
    for layer, kernel, mask in zip(layers, kernels, masks):
        kernel.ravel()[mask] = 0
        layer.kernel.assign(kernel)
        pruned.append(PrunedKernel(layer.name, int(kernel.size), int(np.count_nonzero(kernel == 0))))
    return pruned


def _smallest(magnitudes: np.ndarray, count: int) -> np.ndarray:
    """A mask of exactly `count` smallest entries (ties broken by position)."""
    mask = np.zeros(magnitudes.size, dtype=bool)
    mask[np.argsort(magnitudes, kind="stable")[:count]] = True
    return mask
