"""The per-layer cost counter (minidnn.compress.flops) against hand-computed LeNet-5 figures."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.backend import NumpyBackend
from minidnn.compress.flops import (cost_of, flops_report, layer_costs, register_cost,
                                    total_cost, COST_RULES)
from minidnn.errors import ConfigError
from minidnn.layers import Conv2d, Flatten, Linear, ReLU, Sequential
from minidnn.layers.base import Module
from minidnn.layers.model import Model
from minidnn.models import LeNet5, ResNet32, VGG16
from minidnn.parameter import Parameter

# LeNet-5 by hand: conv1 20x1x5x5 on 28x28 -> 24x24; pool -> 12x12; conv2 50x20x5x5 -> 8x8;
# pool -> 4x4 (800); fc1 800->500; fc2 500->10.
LENET = {"features.conv1": (500, 500 * 24 * 24), "features.conv2": (25_000, 25_000 * 8 * 8),
         "classifier.fc1": (400_000, 400_000), "classifier.fc2": (5_000, 5_000)}


@pytest.fixture
def lenet():
    return LeNet5(seed=0).to(NumpyBackend())


def test_lenet5_dense_by_hand(lenet):
    rows = layer_costs(lenet)
    assert [r.name for r in rows] == list(LENET)
    for r in rows:
        assert (r.weights, r.macs) == LENET[r.name]
        assert r.nnz == r.weights and r.nnz_macs == r.macs and r.flops == 2 * r.macs
    assert [r.out_shape for r in rows] == [(20, 24, 24), (50, 8, 8), (500,), (10,)]
    t = total_cost(rows)
    assert (t.weights, t.macs, t.flops) == (430_500, 2_293_000, 4_586_000)


def test_lenet5_nonzero_macs(lenet):
    w = lenet.features.conv2.weight
    host = w.host_dense()
    host[:10] = 0.0            # 10 of 50 filters: 5,000 weights
    w.data = lenet.backend.from_host(host)
    fc = lenet.classifier.fc1.weight
    h = fc.host_dense()
    h[:, :400] = 0.0           # half of fc1
    fc.data = lenet.backend.from_host(h)
    rows = {r.name: r for r in layer_costs(lenet)}
    assert rows["features.conv2"].nnz == 20_000
    assert rows["features.conv2"].nnz_macs == 20_000 * 64
    assert rows["classifier.fc1"].nnz_macs == 200_000
    assert rows["features.conv1"].nnz_macs == rows["features.conv1"].macs


def test_modes_and_forwards_restored(lenet):
    lenet.train()
    layer_costs(lenet)
    assert all(m.training for _, m in lenet.named_modules())
    assert "forward" not in lenet.features.conv1.__dict__


def test_zoo_totals():
    """VGG16 at 32x32: convs by their output planes (32,32,16,16,8,8,8,4,4,4,2,2,2), fcs once;
    ResNet-32: stride-2 stages and 1x1 projections included; composite = sum of parts."""
    vgg = VGG16(seed=0).to(NumpyBackend())
    rows = layer_costs(vgg)
    sizes = [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]
    convs = [r for r in rows if r.kind.startswith("conv")]
    assert sum(r.macs for r in convs) == sum(r.weights * s * s for r, s in zip(convs, sizes))
    assert total_cost(rows).weights == 16_293_568
    res = ResNet32(seed=0).to(NumpyBackend())
    rrows = layer_costs(res)
    assert total_cost(rrows).weights == 464_432
    block = cost_of(rrows, "stage2.block1")
    parts = [r for r in rrows if r.name.startswith("stage2.block1.")]
    assert len(parts) == 3 and block.macs == sum(r.macs for r in parts)
    # conv1 of stage2.block1: 16->32, stride 2 -> 16x16 output
    assert parts[0].macs == 32 * 16 * 9 * 16 * 16


class TwoLinear(Module):
    """A composite layer without a rule: costs the sum of its sub-layers."""

    def __init__(self):
        super().__init__()
        self.a = Linear(12, 4, rng=np.random.default_rng(0))
        self.b = Linear(4, 5, rng=np.random.default_rng(1))

    def forward(self, x):
        return self.b.forward(self.a.forward(x))


class UserNet(Model):
    def __init__(self):
        super().__init__()
        self.body = Sequential(flatten=Flatten(), pair=TwoLinear(), relu=ReLU())

    def forward(self, x):
        return self.body.forward(x)


def test_user_model_and_composite():
    net = UserNet().to(NumpyBackend())
    rows = layer_costs(net, (3, 2, 2))
    assert [(r.name, r.macs) for r in rows] == [("body.pair.a", 48), ("body.pair.b", 20)]
    assert cost_of(rows, "body.pair").macs == 68


class Odd(Module):
    def __init__(self):
        super().__init__()
        self.weight = Parameter(np.ones((3, 3), np.float32), prox=True)

    def forward(self, x):
        return x


def test_unknown_leaf_needs_a_rule():
    net = Sequential(odd=Odd())
    net.to(NumpyBackend())
    with pytest.raises(ConfigError, match="register_cost"):
        layer_costs(net, (3,))
    assert flops_report(net, (3,)).startswith("FLOPs not counted")
    register_cost(Odd, lambda m, xs, ys: ("odd", 9, 9, 9 * 2, 9 * 2))
    try:
        assert total_cost(layer_costs(net, (3,))).macs == 18
    finally:
        COST_RULES.pop(Odd)


def test_needs_an_input_shape():
    net = UserNet().to(NumpyBackend())
    with pytest.raises(ConfigError, match="input_shape"):
        layer_costs(net)
    with pytest.raises(ConfigError, match="backend"):
        layer_costs(LeNet5(seed=0))


def test_report_table(lenet):
    text = flops_report(lenet)
    assert "features.conv2" in text and "3.200" in text and "4.586" in text


def test_cli_info_shows_flops(tmp_path, capsys):
    from minidnn.cli import main
    from minidnn.io import save
    path = tmp_path / "lenet.h5"
    save(LeNet5(seed=0).to(NumpyBackend()), path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "FLOPs per sample" in out and "4.586" in out
