"""Bits per layer from a file-size budget or an accuracy target (issue 16, item 1).

Each layer is quantized alone at every candidate width and the rise of the loss on a fixed
slice of training images is measured. Taking the rises as additive, the allocations that
minimise ``rise + mu * bytes`` over all ``mu`` (a rate-distortion frontier, as DP-Net trades
error for bits) run from the smallest file to the most accurate one. A byte budget takes the
most accurate frontier point whose file fits; an accuracy target the smallest point whose
accuracy on the evaluation data stays within the allowed drop (a binary search: the
frontier's accuracy rises with its bytes, up to noise).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..data import ArrayDataset
from ..errors import ConfigError
from ..layers.model import Model
from .codec import encode_stream
from .measure import evaluate
from .quantize import (QuantizedLayer, nonzero_entries, quantize_values, round_codebook,
                       write_nonzeros, write_values)

Log = Callable[[str], None]
CALIBRATION_IMAGES = 5000      # training images on which each layer's loss rise is measured
BITS_RANGE = range(2, 9)       # candidate widths per layer
CODEBOOK_BYTES = 2             # a float16 codebook value in the file
MU_GRID = np.geomspace(1e-9, 1e2, 400)


@dataclass(frozen=True)
class Candidate:
    """One layer quantized alone at ``bits``: its record, the bytes of its values stream and
    codebook (the only bytes that depend on the width), and the loss rise it causes."""

    record: QuantizedLayer
    value_bytes: int
    loss_rise: float


def value_bytes(record: QuantizedLayer) -> int:
    """Bytes of a record's entropy-coded assignments plus its codebook."""
    return len(encode_stream(record.assignments, record.bits)[1]) + CODEBOOK_BYTES * record.k


def calibration_slice(train_ds: ArrayDataset, n: int = CALIBRATION_IMAGES) -> ArrayDataset:
    """Every (len / n)-th training image, ``n`` in all: a fixed, class-balanced-ish slice."""
    step = max(1, len(train_ds) // n)
    idx = np.arange(0, len(train_ds), step)[:n]
    return ArrayDataset(train_ds.images[idx], train_ds.labels[idx], train_ds.name,
                        train_ds.classes, train_ds.mean, train_ds.std, train_ds.source)


def layer_candidates(model: Model, calib: ArrayDataset, method: str,
                     bits_range=BITS_RANGE, float16: bool = True) -> dict[str, list[Candidate]]:
    """{layer: candidates for each width} (codebooks rounded to float16 as the file will hold
    them when ``float16``); the model's weights are unchanged afterwards."""
    base = evaluate(model, calib)["loss"]
    out: dict[str, list[Candidate]] = {}
    for name, p in model.prox_parameters():
        positions, values = nonzero_entries(p)
        out[name] = []
        for bits in bits_range:
            codebook, assignments = quantize_values(values, bits, method)
            record = QuantizedLayer(name, p.shape, bits, codebook, assignments, positions)
            record = round_codebook(record) if float16 else record
            write_values(p, record)
            rise = evaluate(model, calib)["loss"] - base
            out[name].append(Candidate(record, value_bytes(record), max(rise, 0.0)))
        write_nonzeros(p, name, positions, values)
    return out


def frontier(cands: dict[str, list[Candidate]]) -> list[dict[str, Candidate]]:
    """The allocations minimising ``sum(rise) + mu * sum(bytes)`` over ``mu``, from the most
    bytes to the fewest, each once."""
    seen, out = set(), []
    for mu in MU_GRID:
        pick = {name: min(c, key=lambda x: (x.loss_rise + mu * x.value_bytes, -x.record.bits))
                for name, c in cands.items()}
        key = tuple(c.record.bits for c in pick.values())
        if key not in seen:
            seen.add(key)
            out.append(pick)
    return out


def apply(model: Model, allocation: dict[str, Candidate]) -> list[QuantizedLayer]:
    """Write an allocation's quantized weights into the model; its records."""
    params = dict(model.named_parameters())
    for name, c in allocation.items():
        write_values(params[name], c.record)
    return [c.record for c in allocation.values()]


def file_bytes(model: Model, records: list[QuantizedLayer], bias_dtype: str,
               metadata: dict) -> int:
    """The size of the quantized file these records make (written to a temporary folder)."""
    from ..io import save
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "q.h5")
        save(model, path, metadata=metadata, quantized=records, bias_dtype=bias_dtype)
        return os.path.getsize(path)


def fit_budget(model: Model, points: list[dict[str, Candidate]], max_bytes: int,
               size_of: Callable[[list[QuantizedLayer]], int]) -> tuple[dict, int]:
    """The most accurate frontier point whose file is at most ``max_bytes`` (and its size):
    sizes are predicted from the values-stream bytes, then the pick is written to check."""
    smallest = size_of(apply(model, points[-1]))
    ref = smallest - sum(c.value_bytes for c in points[-1].values())
    for point in points:                          # most bytes (least loss) first
        if ref + sum(c.value_bytes for c in point.values()) > max_bytes:
            continue
        size = size_of(apply(model, point))
        if size <= max_bytes:
            return point, size
    raise ConfigError(f"no allocation of {BITS_RANGE.start}-{BITS_RANGE.stop - 1} bits per "
                      f"layer fits {max_bytes:,} bytes: the smallest makes {smallest:,}")


def fit_drop(model: Model, points: list[dict[str, Candidate]], max_drop: float,
             test_ds: ArrayDataset, float_accuracy: float, log: Log) -> tuple[dict, float]:
    """The smallest frontier point whose accuracy on ``test_ds`` is at least
    ``float_accuracy - max_drop`` (binary search), and that accuracy."""
    lo, hi = 0, len(points) - 1                  # points[0]: most bytes
    accuracy = {}

    def ok(i: int) -> bool:
        if i not in accuracy:
            apply(model, points[i])
            accuracy[i] = evaluate(model, test_ds)["accuracy"]
            log(f"  bits {_spec(points[i])}: {100 * accuracy[i]:.2f}%")
        return accuracy[i] >= float_accuracy - max_drop - 1e-12

    if not ok(lo):
        raise ConfigError(f"even {_spec(points[0])} loses more than {100 * max_drop:.2f} "
                          f"points ({100 * float_accuracy:.2f}% -> {100 * accuracy[lo]:.2f}%)")
    while lo < hi:                               # invariant: ok(lo)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return points[lo], accuracy[lo]


def _spec(point: dict[str, Candidate]) -> str:
    """'conv1=8,conv2=5,...' of an allocation."""
    return ",".join(f"{c.record.label}={c.record.bits}" for c in point.values())


def choose_bits(model: Model, method: str, train_ds: ArrayDataset,
                test_ds: ArrayDataset | None, max_bytes: int | None = None,
                max_drop: float | None = None, bias_dtype: str = "float16",
                metadata: dict | None = None, float16: bool = True, log: Log = print
                ) -> tuple[dict[str, int], dict]:
    """{layer: bits} for a file of at most ``max_bytes`` or a test-accuracy drop of at most
    ``max_drop`` (a fraction: 0.001 = 0.1 points), and the figures of the search. The
    model's weights are left as they were (float)."""
    if (max_bytes is None) == (max_drop is None):
        raise ConfigError("give exactly one of a byte budget and an accuracy drop")
    if max_drop is not None and test_ds is None:
        raise ConfigError("an accuracy target needs evaluation data (--data)")
    saved = {name: nonzero_entries(p) for name, p in model.prox_parameters()}
    float_accuracy = evaluate(model, test_ds)["accuracy"] if max_drop is not None else None
    cands = layer_candidates(model, calibration_slice(train_ds), method, float16=float16)
    points = frontier(cands)
    log(f"bit allocation: {len(points)} frontier points from {_spec(points[-1])} to "
        f"{_spec(points[0])}")
    try:
        if max_bytes is not None:
            size_of = lambda recs: file_bytes(model, recs, bias_dtype, metadata or {})  # noqa: E731
            point, size = fit_budget(model, points, max_bytes, size_of)
            found = {"bits_budget": max_bytes, "bits_file_bytes": size}
        else:
            point, acc = fit_drop(model, points, max_drop, test_ds, float_accuracy, log)
            found = {"bits_max_drop": max_drop, "bits_search_accuracy": acc}
    finally:
        for name, p in model.prox_parameters():
            write_nonzeros(p, name, *saved[name])
    log(f"bit allocation: {_spec(point)}")
    return {name: c.record.bits for name, c in point.items()}, \
        {**found, "bits_frontier_points": len(points)}
