"""Arrays to calibrate and evaluate on: `.npz` files keyed by input name (plus `labels`), or a seeded sample."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.serving.types import Arrays, Signature

LABELS = "labels"         # the key of the optional labels in an --eval file
SAMPLE_ROWS = 256         # rows of the seeded sample used when no data is given
CALIBRATION_ROWS = 500    # rows the int8 calibration reads at most


class DataError(ValueError):
    """A calibration or evaluation file that does not fit the model; the message says how."""


@dataclass(frozen=True)
class Dataset:
    """Named input arrays (rows first), optional labels, and where they came from (for the report)."""

    inputs: Arrays
    labels: np.ndarray | None
    origin: str

    @property
    def rows(self) -> int:
        """The number of rows."""
        return len(next(iter(self.inputs.values())))


def read_npz(path: Path, signature: Signature, purpose: str) -> Dataset:
    """The arrays of `path` checked against the model's inputs: names, row shapes, one row count."""
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{purpose} file {path}: cannot read it as .npz ({exc})") from None
    names = set(stored.files) - {LABELS}
    wanted = set(signature.input_names)
    if names != wanted:
        missing, extra = sorted(wanted - names), sorted(names - wanted)
        raise DataError(f"{purpose} file {path.name}: its arrays must be named after the model's inputs "
                        f"{sorted(wanted)}" + (f"; missing {missing}" if missing else "")
                        + (f"; unknown {extra}" if extra else ""))
    inputs = {}
    for spec in signature.inputs:
        array = stored[spec.name]
        if array.ndim != len(spec.shape) or any(want is not None and have != want
                                                for have, want in zip(array.shape[1:], spec.shape[1:])):
            raise DataError(f"{purpose} file {path.name}: input {spec.name!r} has shape {list(array.shape)}, "
                            f"the model takes {['rows', *[d for d in spec.shape[1:]]]}")
        inputs[spec.name] = array.astype(spec.dtype)
    labels = stored[LABELS] if LABELS in stored.files else None
    counts = {len(array) for array in inputs.values()} | ({len(labels)} if labels is not None else set())
    if len(counts) != 1 or 0 in counts:
        raise DataError(f"{purpose} file {path.name}: every array needs the same number of rows, at least one "
                        f"(found {sorted(counts)})")
    with_labels = ", with labels" if labels is not None else ""
    return Dataset(inputs, labels, f"{path.name} ({next(iter(counts))} rows{with_labels})")


def seeded_sample(signature: Signature, rows: int = SAMPLE_ROWS, seed: int = 0) -> Dataset:
    """`rows` rows that fit the signature: normal(0, 1) floats, zeros for integers. Not the user's data."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in signature.inputs:
        shape = (rows, *(1 if d is None else d for d in spec.shape[1:]))
        floating = np.issubdtype(np.dtype(spec.dtype), np.floating)
        inputs[spec.name] = (rng.standard_normal(shape) if floating else np.zeros(shape)).astype(spec.dtype)
    return Dataset(inputs, None, f"a seeded sample ({rows} rows of normal(0, 1) noise, seed {seed}): "
                                 "not your data; pass --eval FILE.npz for figures that mean something")


def calibration_rows(data: Dataset, limit: int = CALIBRATION_ROWS) -> Iterator[dict[str, np.ndarray]]:
    """One-row inputs for the converter's representative dataset, at most `limit`."""
    for row in range(min(data.rows, limit)):
        yield {name: array[row:row + 1] for name, array in data.inputs.items()}
