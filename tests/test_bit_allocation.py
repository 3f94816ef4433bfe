"""Bits per layer from a byte budget or an accuracy target (minidnn.compress.bit_allocation)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from minidnn.backend import NumpyBackend
from minidnn.layers import Conv2d, Flatten, Linear, ReLU
from minidnn.layers.model import Model
from minidnn.compress.bit_allocation import (choose_bits, file_bytes, frontier,
                                             layer_candidates)
from minidnn.compress.quantize import quantize_model
from minidnn.compress.quantize_stage import QuantizeSettings, quantize_stage
from minidnn.data import ArrayDataset
from minidnn.errors import ConfigError


class Tiny(Model):
    """conv 1->8 (3x3) + ReLU + linear 288->10 on 8x8 images: small enough for fast tests."""

    input_shape = (1, 8, 8)

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        rng = np.random.default_rng(seed)
        self.conv1 = Conv2d(1, 8, 3, rng=rng)
        self.relu = ReLU()
        self.flat = Flatten()
        self.fc1 = Linear(288, 10, rng=rng)


def _model(seed: int = 0):
    """``Tiny`` at ~50% zeros."""
    model = Tiny(seed).to(NumpyBackend())
    rng = np.random.default_rng(seed)
    for _, p in model.prox_parameters():
        host = p.host_dense()
        p.data = model.backend.from_host(np.where(rng.random(host.shape) < 0.5, host * 3, 0)
                                         .astype(np.float32))
    return model


def _data(model, n: int = 96) -> ArrayDataset:
    """Random images labelled by the float model itself (so quantization can only hurt)."""
    x = np.random.default_rng(1).standard_normal((n, 1, 8, 8)).astype(np.float32)
    logits = model.backend.to_host(model.eval().forward(model.backend.from_host(x)))
    return ArrayDataset(x, np.argmax(logits, axis=1).astype(np.int32), "toy", list("0123456789"))


def _weights(model):
    return {n: p.host_dense().copy() for n, p in model.prox_parameters()}


def test_candidates_leave_the_weights_and_rise_as_bits_fall():
    model = _model()
    before = _weights(model)
    cands = layer_candidates(model, _data(model), "kmeans", bits_range=range(2, 7))
    for name, w in _weights(model).items():
        assert np.array_equal(w, before[name]), name
    fc1 = cands["fc1.weight"]
    assert [c.record.bits for c in fc1] == [2, 3, 4, 5, 6]
    assert fc1[0].value_bytes < fc1[-1].value_bytes and fc1[0].loss_rise > fc1[-1].loss_rise
    points = frontier(cands)
    sizes = [sum(c.value_bytes for c in p.values()) for p in points]
    assert len(points) >= 3 and sizes == sorted(sizes, reverse=True)
    assert all(c.record.bits == 2 for c in points[-1].values())


def test_a_budget_gives_the_most_accurate_file_that_fits():
    model = _model()
    data = _data(model)
    floats = _weights(model)
    small = file_bytes(model, quantize_model(model, 2), "float16", {})
    for name, p in model.prox_parameters():       # back to the float weights
        p.data = model.backend.from_host(floats[name])
    big = file_bytes(model, quantize_model(model, 6), "float16", {})
    for name, p in model.prox_parameters():
        p.data = model.backend.from_host(floats[name])
    budget = (small + big) // 2
    q = QuantizeSettings(method="kmeans", max_bytes=budget)
    records, figures = quantize_stage(model, q, data, data, log=lambda s: None)
    assert small < figures["bits_file_bytes"] <= budget
    bits = {r.label: r.bits for r in records}
    assert figures["quantize_per_layer"] == ",".join(f"{k}={v}" for k, v in bits.items())
    assert any(b > 2 for b in bits.values()) and any(b < 6 for b in bits.values())
    assert figures["bits_file_bytes"] == file_bytes(model, records, "float16", {})  # no tuning


def test_an_accuracy_target_is_met_on_the_evaluation_data():
    model = _model()
    data = _data(model)
    per, figures = choose_bits(model, "kmeans", data, data, max_drop=0.0, log=lambda s: None)
    assert figures["bits_search_accuracy"] == 1.0        # the float model labelled the data
    quantize_model(model, 5, per, "kmeans")
    assert np.mean(np.argmax(model.backend.to_host(model.eval().forward(
        model.backend.from_host(data.images))), axis=1) == data.labels) == 1.0


def test_bad_allocation_requests_are_refused():
    model = _model()
    data = _data(model, 16)
    with pytest.raises(ConfigError, match="not both"):
        QuantizeSettings(max_bytes=100, max_drop=0.01).check()
    with pytest.raises(ConfigError, match="positive integer"):
        QuantizeSettings(max_bytes=0).check()
    with pytest.raises(ConfigError, match="fraction"):
        QuantizeSettings(max_drop=1.5).check()
    with pytest.raises(ConfigError, match="training data"):
        quantize_stage(model, QuantizeSettings(max_bytes=10_000), None, data)
    with pytest.raises(ConfigError, match="fits 100 bytes"):
        quantize_stage(model, QuantizeSettings(max_bytes=100), data, data, log=lambda s: None)


def test_cli_budget_flag(tmp_path, monkeypatch):
    from minidnn.cli import main
    from minidnn.io import save
    import minidnn.data as datasets
    model = _model()
    data = _data(model)
    src = tmp_path / "m.h5"
    save(model, src, metadata={"accuracy": 1.0, "method": "spc"})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, root=None: (data, data))
    out = tmp_path / "q.h5"
    assert main(["quantize", str(src), "--out", str(out), "--max-bytes", "30000", "--data",
                 "mnist", "--backend", "numpy"]) == 0
    assert os.path.getsize(out) <= 30000
    assert main(["quantize", str(src), "--out", str(out), "--max-bytes", "-3"]) != 0
