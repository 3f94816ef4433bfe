"""Channel pruning: which layers are prunable, exactness of the surgery (the pruned model computes
what the original computes with the removed channels cut off), scores, files, the command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minidnn.backend import NumpyBackend
from minidnn.cli import main
from minidnn.compress import TrainConfig
from minidnn.compress.channel_prune import (ChannelPruneSettings, finetune,
                                            prune_model_channels, relative_figures, weight_sizes)
from minidnn.compress.channel_scores import l1_scores, label_information
from minidnn.compress.channels import keep_counts, keep_indices, prunable_groups, prune_channels
from minidnn.compress.flops import layer_costs, total_cost
from minidnn.compress.methods import get_method
from minidnn.data import ArrayDataset
from minidnn.errors import ConfigError
from minidnn.io import load, save
from minidnn.layers import (BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear,
                            MaxPool2d, ReLU, Sequential)
from minidnn.layers.model import Model
from minidnn.models import BasicBlock, LeNet5, ResNet32, VGG16


class SmallNet(Model):
    """conv-BN-ReLU-pool, conv-BN-ReLU, a residual block, conv, flatten, fc-BN1d-ReLU-drop, fc."""

    input_shape = (3, 8, 8)

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        rng = np.random.default_rng(seed)
        self.features = Sequential(
            conv1=Conv2d(3, 6, 3, padding=1, rng=rng), bn1=BatchNorm2d(6), relu1=ReLU(),
            pool1=MaxPool2d(2),
            conv2=Conv2d(6, 8, 3, padding=1, bias=False, rng=rng), bn2=BatchNorm2d(8),
            relu2=ReLU(), block=BasicBlock(8, 8, 1, rng),
            conv3=Conv2d(8, 5, 3, padding=1, rng=rng), flatten=Flatten())
        self.classifier = Sequential(
            fc1=Linear(80, 12, rng=rng), bn=BatchNorm1d(12), relu=ReLU(), drop=Dropout(0.3),
            fc2=Linear(12, 4, rng=rng))


def _set_norm_stats(model: Model, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    b = model.backend
    for _, m in model.named_modules():
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            n = m.num_features
            m.running_mean = b.from_host(rng.normal(0, 0.5, n).astype(np.float32))
            m.running_var = b.from_host(rng.uniform(0.5, 2.0, n).astype(np.float32))
            m.weight.data = b.from_host(rng.normal(0.5, 0.3, n).astype(np.float32))
            m.bias.data = b.from_host(rng.normal(0.0, 0.3, n).astype(np.float32))


def _outputs(model: Model, x: np.ndarray) -> np.ndarray:
    model.eval()
    b = model.backend
    return b.to_host(model.forward(b.from_host(x)))


def _cut_consumers(model: Model, keep: dict) -> None:
    """The reference: the original model with every removed channel's consumer inputs zeroed."""
    for g in prunable_groups(model):
        if g.name not in keep:
            continue
        drop = np.setdiff1d(np.arange(g.width), keep[g.name])
        w = g.consumer.weight.host_dense()
        if isinstance(g.consumer, Conv2d):
            w[:, drop] = 0.0
        else:
            cols = (drop[:, None] * g.spread + np.arange(g.spread)).ravel()
            w[:, cols] = 0.0
        g.consumer.weight.data = model.backend.from_host(w)


def _random_keep(model: Model, rng) -> dict:
    return {g.name: np.sort(rng.choice(g.width, max(1, g.width // 2), replace=False))
            for g in prunable_groups(model)}


@pytest.mark.parametrize("cls", [SmallNet, LeNet5])
def test_pruned_equals_original_with_channels_cut(cls):
    b = NumpyBackend(dtype=np.float64)
    shape = cls.input_shape
    original, pruned = cls(seed=3).to(b), cls(seed=3).to(b)
    _set_norm_stats(original), _set_norm_stats(pruned)
    keep = _random_keep(pruned, np.random.default_rng(5))
    prune_channels(pruned, keep)
    _cut_consumers(original, keep)
    x = np.random.default_rng(7).standard_normal((4,) + shape)
    np.testing.assert_allclose(_outputs(pruned, x), _outputs(original, x), rtol=1e-10,
                               atol=1e-10)
    assert total_cost(layer_costs(pruned)).weights < total_cost(layer_costs(original)).weights


def test_which_layers_are_prunable():
    b = NumpyBackend()
    assert [(g.label, g.consumer_name, g.spread) for g in prunable_groups(LeNet5().to(b))] == [
        ("conv1", "features.conv2", 1), ("conv2", "classifier.fc1", 16),
        ("fc1", "classifier.fc2", 1)]
    vgg = prunable_groups(VGG16().to(b))
    assert len(vgg) == 15 and all(len(g.norms) == 1 for g in vgg[:13])
    res = prunable_groups(ResNet32().to(b))
    # only the inner conv of each of the 15 basic blocks: block outputs meet the residual add
    assert len(res) == 15 and all(g.name.endswith("main.conv1") for g in res)
    assert all(g.consumer_name.endswith("main.conv2") for g in res)
    small = [g.label for g in prunable_groups(SmallNet().to(b))]
    # conv2 feeds the block's identity shortcut: not prunable; 'conv1' twice: full labels
    assert small == ["features.conv1", "features.block.main.conv1", "features.conv3",
                     "classifier.fc1"]


def test_resnet_block_pruning_keeps_the_residual_width():
    b = NumpyBackend()
    model = ResNet32(blocks_per_stage=1).to(b)
    keep = {g.name: np.arange(g.width // 4) for g in prunable_groups(model)}
    prune_channels(model, keep)
    block = model.stage2.block1
    assert block.main.conv1.out_channels == 8 and block.main.bn1.num_features == 8
    assert block.main.conv2.in_channels == 8 and block.main.conv2.out_channels == 32
    y = _outputs(model, np.zeros((2, 3, 32, 32), np.float32))
    assert y.shape == (2, 10)


def test_keep_counts_and_indices():
    groups = prunable_groups(LeNet5().to(NumpyBackend()))
    assert keep_counts(groups, 0.5) == {"features.conv1": 10, "features.conv2": 25,
                                        "classifier.fc1": 250}
    assert keep_counts(groups, None, {"fc1": 0.9})["classifier.fc1"] == 50
    assert keep_counts(groups, 0.99)["features.conv1"] == 1
    assert keep_indices(np.array([3.0, 1.0, 3.0, 5.0]), 2).tolist() == [0, 3]


@pytest.mark.parametrize("ratio,per_layer,match", [
    (1.0, None, "in \\[0, 1\\)"), (-0.1, None, "in \\[0, 1\\)"), (None, None, "--ratio"),
    (0.5, {"fc2": 0.5}, "not one of the prunable"), (0.5, {"conv9": 0.1}, "not one of")])
def test_bad_ratios(ratio, per_layer, match):
    groups = prunable_groups(LeNet5().to(NumpyBackend()))
    with pytest.raises(ConfigError, match=match):
        keep_counts(groups, ratio, per_layer)


class OwnForward(Model):
    def __init__(self):
        super().__init__()
        self.fc = Linear(4, 4)

    def forward(self, x):
        return self.fc.forward(x)


def test_model_with_its_own_forward_is_refused():
    with pytest.raises(ConfigError, match="its own"):
        prunable_groups(OwnForward().to(NumpyBackend()))


def test_l1_score_and_label_information():
    model = LeNet5().to(NumpyBackend())
    g = prunable_groups(model)[0]
    w = g.producer.weight.host_dense()
    assert np.allclose(l1_scores(g), np.abs(w).reshape(20, -1).sum(1))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    a = np.stack([y + 0.1 * rng.standard_normal(2000),          # tells the class
                  rng.standard_normal(2000),                     # noise
                  np.full(2000, 3.0)], axis=1)                   # constant
    info = label_information(a, y)
    assert info[0] > 1.0 and info[1] < 0.05 and info[2] == 0.0
    assert info[0] <= np.log(4) + 1e-9


def _dataset(n: int = 240, shape=(1, 28, 28), seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    x = rng.standard_normal((n,) + shape).astype(np.float32) * 0.3
    x[:, :, :4, :4] += y[:, None, None, None]
    return ArrayDataset(x, y, "synthetic", ["a", "b", "c"])


@pytest.mark.parametrize("score", ["nb", "l1"])
def test_prune_finetune_and_file_round_trip(tmp_path, score):
    b = NumpyBackend()
    model = LeNet5(seed=0).to(b)
    data = _dataset()
    before = weight_sizes(model)
    cut = prune_model_channels(model, ChannelPruneSettings(ratio=0.6, score=score, samples=200),
                               data, 64, log=lambda s: None)
    assert cut["widths"] == {"conv1": [20, 8], "conv2": [50, 20], "fc1": [500, 200]}
    fig = relative_figures(model, before)
    assert fig["weights"] == 430_500 and fig["kept_weights"] == 8 * 25 + 20 * 8 * 25 + 320 * 200 \
        + 200 * 10
    assert fig["compression"] == pytest.approx(430_500 / fig["nnz"])
    finetune(model, data, None, 3, TrainConfig(batch_size=32, log_every=1000), 1e-4,
             log=lambda s: None)
    path = tmp_path / "pruned.h5"
    save(model, path)
    again = load(path)
    assert type(again) is Model and again.features.conv2.out_channels == 20
    assert again.classifier.fc1.in_features == 320
    x = data.images[:8]
    np.testing.assert_array_equal(_outputs(again, x), _outputs(model, x))


def test_user_model_round_trip(tmp_path):
    b = NumpyBackend()
    model = SmallNet().to(b)
    prune_model_channels(model, ChannelPruneSettings(per_layer={"fc1": 0.5, "conv3": 0.4},
                                                     score="l1"), log=lambda s: None)
    assert model.classifier.bn.num_features == 6 and model.features.conv3.out_channels == 3
    assert model.classifier.fc1.in_features == 48
    with pytest.raises(ConfigError, match="ambiguous"):
        keep_counts(prunable_groups(model), None, {"conv1": 0.5})
    save(model, tmp_path / "s.h5")
    again = load(tmp_path / "s.h5")
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_outputs(again, x), _outputs(model, x))


def test_registered_methods():
    assert get_method("chnb").score == "nb" and get_method("chl1+retrain").score == "l1"
    assert get_method("chnb").params == ("ratio",)


@pytest.fixture
def lenet_file(tmp_path):
    path = tmp_path / "lenet.h5"
    save(LeNet5(seed=0).to(NumpyBackend()), path)
    return path


@pytest.fixture
def fake_mnist(monkeypatch):
    import minidnn.data
    monkeypatch.setattr(minidnn.data, "load_dataset",
                        lambda name, root=None: (_dataset(256), _dataset(128, seed=1)))


def test_cli_prune_channels(tmp_path, lenet_file, fake_mnist, capsys):
    out, js = tmp_path / "p.h5", tmp_path / "p.json"
    rc = main(["prune-channels", str(lenet_file), "--ratio", "0.5", "--per-layer", "fc1=0.8",
               "--score", "nb", "--calib-samples", "128", "--finetune-steps", "2",
               "--batch-size", "32", "--backend", "numpy", "--out", str(out), "--json", str(js),
               "--eval-images", "100", "--finetune-minutes", "5"])
    assert rc == 0, capsys.readouterr().err
    record = json.loads(js.read_text())
    assert record["widths"]["fc1"] == [500, 100] and record["finetune_steps"] == 2
    assert record["test_images"] == 100
    assert record["file_bytes"] == out.stat().st_size
    assert load(out).classifier.fc1.out_features == 100
    assert "MFLOPs" in capsys.readouterr().out


@pytest.mark.parametrize("args,text", [
    (["--ratio", "1"], "--ratio: must be at least 0 and below 1"),
    (["--ratio", "0.5", "--score", "l2"], "invalid choice"),
    (["--ratio", "0.5", "--finetune-steps", "-1"], "--finetune-steps"),
    (["--ratio", "0.5", "--eval-images", "0"], "--eval-images"),
    (["--ratio", "0.5", "--finetune-minutes", "nan"], "--finetune-minutes"),
    (["--per-layer", "fc2=0.5"], "not one of the prunable layers"),
    (["--per-layer", "fc1"], "is not LAYER=VALUE"),
    (["--per-layer", "fc1=1.5"], "must be in [0, 1)"),
    ([], "give --ratio R or --per-layer SPEC")])
def test_cli_bad_options(lenet_file, fake_mnist, capsys, args, text):
    rc = main(["prune-channels", str(lenet_file), "--backend", "numpy", *args])
    err = capsys.readouterr().err
    assert rc == 2 and text in err and len(err.strip().splitlines()) == 1


def test_pruned_model_runs_on_opencl(clb):
    """The surgery is host-side; the smaller layers then run on the device like any other."""
    ref = LeNet5(seed=0).to(NumpyBackend())
    dev = LeNet5(seed=0).to(clb)
    keep = _random_keep(ref, np.random.default_rng(1))
    prune_channels(ref, keep), prune_channels(dev, keep)
    x = np.random.default_rng(2).standard_normal((5, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(dev.predict(x), ref.predict(x))
    np.testing.assert_allclose(_outputs(dev, x), _outputs(ref, x), rtol=1e-4, atol=1e-4)


def test_sweep_includes_channel_pruning(tmp_path):
    """chnb/chl1 run in a sweep from the dense reference like Pru; zeros = weights removed."""
    from minidnn.compress.sweep import SweepSpec, make_jobs, run_sweep

    def data():
        return _dataset(192, (3, 8, 8)), _dataset(96, (3, 8, 8), seed=1)

    spec = SweepSpec(model="small", data="synthetic", train=TrainConfig(batch_size=32,
                     log_every=1000), steps=20, retrain_steps=5, out=str(tmp_path),
                     model_factory=SmallNet, data_factory=data, echo=False)
    quiet = lambda s: None  # noqa: E731
    r = run_sweep(spec, make_jobs("chnb+retrain", [0.5], "ratio"), log=quiet)
    assert not r["failed"]
    r = run_sweep(spec, make_jobs("chl1", [0.5], "ratio"), log=quiet)
    records = {rec["method"]: rec for rec in r["records"]}
    assert set(records) >= {"chnb", "chnb+retrain", "chl1"}
    assert 0.3 < records["chl1"]["zeros"] < 0.9 and records["chl1"]["weights"] == \
        sum(p.numel for _, p in SmallNet().prox_parameters())
