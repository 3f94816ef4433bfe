"""Low-rank compression (issue 17): factorized layers (gradients, parity, files, plans), the
decompositions, rank selection, the decompose workflow, command and sweep method."""
from __future__ import annotations

import json

import numpy as np
import pytest

import minidnn as mdn
from minidnn import cli
from minidnn.backend import NumpyBackend
from minidnn.compress import decompose as dec
from minidnn.compress.factorize import candidates, factorize, layer_macs
from minidnn.compress.flops import layer_costs
from minidnn.compress.lowrank import DecomposeSettings, decompose_model, model_ranks
from minidnn.compress.methods import get_method, sweep_variants
from minidnn.compress.rank_search import GASettings, search_ranks
from minidnn.compress.ranks import energy_rank, parse_rank_rule, vbmf_rank
from minidnn.data import ArrayDataset
from minidnn.errors import ConfigError
from minidnn.inference import predict
from minidnn.layers import (Conv2d, CPConv2d, Flatten, Linear, LowRankLinear, MaxPool2d, ReLU,
                            Sequential, Tucker2Conv2d)
from minidnn.layers.model import Model
from minidnn.train_config import TrainConfig

from gradcheck import check_layer
from synthetic import template_classes

HAVE_TENSORLY = dec.have_tensorly()
needs_tensorly = pytest.mark.skipif(not HAVE_TENSORLY, reason="TensorLy not installed "
                                                              "(pip install -e .[lowrank])")


def _random_weights(layer, seed: int = 3):
    """Every parameter random and nonzero (biases too), the same on any backend."""
    rng = np.random.default_rng(seed)
    layer.load_state_dict({n: rng.standard_normal(p.shape) * 0.5
                           for n, p in layer.named_parameters()})
    return layer


LAYERS = {
    "lowrank_linear": (lambda: LowRankLinear(7, 5, 3), (4, 7)),
    "tucker2": (lambda: Tucker2Conv2d(4, 6, 3, padding=1, rank_in=2, rank_out=3), (2, 4, 6, 5)),
    "tucker2_s2": (lambda: Tucker2Conv2d(3, 5, 3, stride=2, rank_in=2, rank_out=4),
                   (2, 3, 7, 8)),
    "cp": (lambda: CPConv2d(4, 6, 3, padding=1, rank=5), (2, 4, 6, 5)),
    "cp_s2_p2": (lambda: CPConv2d(3, 4, 5, stride=2, padding=2, rank=3, bias=False),
                 (2, 3, 9, 7)),
    "conv_k3x1_depthwise": (lambda: Conv2d(4, 4, (3, 1), padding=1, groups=4), (2, 4, 5, 6)),
    "conv_k1x4": (lambda: Conv2d(2, 3, (1, 4), stride=2), (2, 2, 5, 9)),
}


# ---------------------------------------------------------------------- layers
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_gradients(np64, rng, case):
    make, shape = LAYERS[case]
    layer = _random_weights(make().to(np64))
    check_layer(layer, rng.standard_normal(shape), rng)


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_opencl_matches_numpy(clb, np32, case):
    make, shape = LAYERS[case]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    dy = None
    out = {}
    for name, be in (("np", np32), ("cl", clb)):
        layer = _random_weights(make().to(be))
        layer.train()
        y = layer.forward(be.from_host(x))
        dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
        layer.zero_grad()
        dx = layer.backward(be.from_host(dy))
        out[name] = {"y": be.to_host(y), "dx": be.to_host(dx),
                     **{n: be.to_host(p.grad) for n, p in layer.named_parameters()}}
    for key, ref in out["np"].items():
        np.testing.assert_allclose(out["cl"][key], ref, rtol=1e-4, atol=1e-4, err_msg=key)


def test_full_rank_factorizations_compute_the_dense_layer(np64, rng):
    x = rng.standard_normal((2, 6, 9, 8))
    for stride, pad in ((1, 1), (2, 1), (1, 0), (2, 2)):
        conv = _random_weights(Conv2d(6, 5, 3, stride=stride, padding=pad).to(np64))
        y = conv(x)
        tk = factorize(conv, "tucker2", {"rank_in": 6, "rank_out": 5})
        np.testing.assert_allclose(tk(x), y, atol=1e-5)
        assert tk(x).shape == y.shape
    lin = _random_weights(Linear(7, 5).to(np64))
    xl = rng.standard_normal((3, 7))
    np.testing.assert_allclose(factorize(lin, "svd", {"rank": 5})(xl), lin(xl), atol=1e-5)


def test_cp_layer_of_an_exact_cp_weight(np64, rng):
    """A weight that is a sum of 3 rank-1 terms with orthonormal factors: the tensor power
    method recovers it, and the CP layer computes the conv (stride 2, padding 1)."""
    q = [np.linalg.qr(rng.standard_normal((n, 3)))[0] for n in (6, 5, 3, 3)]
    w = dec.cp_compose(np.array([3.0, 2.0, 1.0]), q)
    conv = Conv2d(5, 6, 3, stride=2, padding=1).to(np64)
    conv.weight.data[...] = w
    x = rng.standard_normal((2, 5, 7, 6))
    cp = factorize(conv, "cp", {"rank": 3}, "tpm")
    np.testing.assert_allclose(cp(x), conv(x), atol=1e-5)


def test_bad_layer_options_are_config_errors():
    for make in (lambda: CPConv2d(4, 4, 3, rank=0), lambda: Tucker2Conv2d(4, 4, 0),
                 lambda: LowRankLinear(3, 3, -1), lambda: Conv2d(2, 2, (3, 1, 1)),
                 lambda: Conv2d(2, 2, (3, 0))):
        with pytest.raises(ConfigError):
            make()


# ---------------------------------------------------------------------- models and files
class SmallNet(Model):
    """conv 1->6 3x3 pad 1, pool, conv 6->8 3x3, fc 32->16, ReLU, fc 16->3 (6x6 inputs...
    here 8x8: 8 -> 8 -> 4 -> 2)."""

    input_shape = (1, 8, 8)
    num_classes = 3

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        rng = np.random.default_rng(seed)
        self.features = Sequential(conv1=Conv2d(1, 6, 3, padding=1, rng=rng),
                                   pool=MaxPool2d(2), conv2=Conv2d(6, 8, 3, rng=rng),
                                   flatten=Flatten())
        self.classifier = Sequential(fc1=Linear(32, 16, rng=rng), relu=ReLU(),
                                     fc2=Linear(16, 3, rng=rng))


def synthetic(n: int = 512, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Three classes: fixed 8x8 templates plus noise."""
    return template_classes(n, 8, seed)


def factorized_net(backend) -> Model:
    model = SmallNet().to(backend)
    model.features.conv1 = CPConv2d(1, 6, 3, padding=1, rank=4).to(backend)
    model.features.conv2 = Tucker2Conv2d(6, 8, 3, rank_in=3, rank_out=4).to(backend)
    model.classifier.fc1 = LowRankLinear(32, 16, 5).to(backend)
    from minidnn.compress.lowrank import plain_model
    return plain_model(model)


def test_file_round_trip_records_forms_and_ranks(tmp_path, np32):
    model = factorized_net(np32)
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    model.eval()
    y = np32.to_host(model.forward(np32.from_host(x)))
    path = tmp_path / "lr.h5"
    mdn.save(model, path)
    loaded = mdn.load(path)   # rebuilt from the record, no class
    loaded.eval()
    np.testing.assert_array_equal(np32.to_host(loaded.forward(np32.from_host(x))), y)
    assert model_ranks(loaded) == [
        {"layer": "features.conv1", "form": "cp", "ranks": {"rank": 4}},
        {"layer": "features.conv2", "form": "tucker2", "ranks": {"rank_in": 3, "rank_out": 4}},
        {"layer": "classifier.fc1", "form": "svd", "ranks": {"rank": 5}}]
    text = mdn.io.describe(path)
    assert "Tucker2Conv2d(" in text and "rank_in=3, rank_out=4" in text and "rank=5" in text


def test_info_shows_forms_ranks_and_flops(tmp_path, np32, capsys):
    path = tmp_path / "lr.h5"
    mdn.save(factorized_net(np32), path)
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "CPConv2d(" in out and "tk2 3,4" in out and "cp 4" in out and "svd 5" in out


def test_flop_rules_sum_the_pieces(np32):
    model = factorized_net(np32)
    rows = {r.name: r for r in layer_costs(model)}
    conv2 = rows["features.conv2"]
    # first 1x1 at 4x4 input, core 3x3 and last 1x1 at the 2x2 output
    assert conv2.macs == 6 * 3 * 16 + 3 * 4 * 9 * 4 + 4 * 8 * 4
    conv1 = rows["features.conv1"]
    # first at 8x8; k x 1 strip on the padded width (8 x 10); 1 x k back to 8x8; last 8x8
    assert conv1.macs == 1 * 4 * 64 + 4 * 3 * 80 + 4 * 3 * 64 + 4 * 6 * 64
    dense = Conv2d(1, 6, 3, padding=1)
    assert layer_macs("cp", dense, {"rank": 4}, (8, 8)) == conv1.macs
    assert rows["classifier.fc1"].macs == 5 * (32 + 16)


def test_plan_runs_factorized_layers(np32):
    model = factorized_net(np32)
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    model.eval()
    want = np.argmax(np32.to_host(model.forward(np32.from_host(x))), axis=1)
    np.testing.assert_array_equal(predict(model, x, batch_size=2), want)


def test_plan_on_opencl_matches_numpy(clb, np32, tmp_path):
    path = tmp_path / "lr.h5"
    mdn.save(factorized_net(np32), path)
    x = np.random.default_rng(1).standard_normal((7, 1, 8, 8)).astype(np.float32)
    ref = mdn.load(path, backend=np32)
    ref.eval()
    want = np32.to_host(ref.forward(np32.from_host(x)))
    from minidnn.inference import InferencePlan
    got = InferencePlan(mdn.load(path, backend=clb), 4).logits(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------- decompositions
def test_truncated_svd_is_the_best_rank_r_approximation(rng):
    w = rng.standard_normal((12, 9))
    left, right = dec.truncated_svd(w, 4)
    s = np.linalg.svd(w, compute_uv=False)
    assert np.isclose(np.linalg.norm(w - left @ right), np.sqrt(np.sum(s[4:] ** 2)))
    with pytest.raises(ConfigError):
        dec.truncated_svd(w, 10)


def test_tucker2_hosvd_exact_at_multilinear_rank(rng):
    core = rng.standard_normal((3, 2, 3, 3))
    u_out = np.linalg.qr(rng.standard_normal((7, 3)))[0]
    u_in = np.linalg.qr(rng.standard_normal((5, 2)))[0]
    w = dec.tucker2_compose(core, u_out, u_in)
    assert dec.relative_error(w, dec.tucker2_compose(*dec.tucker2(w, 3, 2))) < 1e-10
    with pytest.raises(ConfigError):
        dec.tucker2(w, 3, 2, "nope")


@needs_tensorly
def test_hooi_is_no_worse_than_hosvd(rng):
    w = rng.standard_normal((10, 8, 3, 3))
    e_hosvd = dec.relative_error(w, dec.tucker2_compose(*dec.tucker2(w, 4, 3, "hosvd")))
    e_hooi = dec.relative_error(w, dec.tucker2_compose(*dec.tucker2(w, 4, 3, "hooi")))
    assert e_hooi <= e_hosvd + 1e-9


@needs_tensorly
def test_cp_als_recovers_an_exact_cp_tensor(rng):
    factors = [rng.standard_normal((n, 3)) for n in (6, 5, 3, 3)]
    w = dec.cp_compose(np.ones(3), factors)
    assert dec.relative_error(w, dec.cp_compose(*dec.cp(w, 3, "als", n_iter=500))) < 1e-5


def test_tensorly_algorithms_without_tensorly_name_the_extra(monkeypatch, rng):
    monkeypatch.setattr(dec, "have_tensorly", lambda: False)
    w = rng.standard_normal((4, 3, 3, 3))
    for call in (lambda: dec.tucker2(w, 2, 2, "hooi"), lambda: dec.cp(w, 2, "als")):
        with pytest.raises(ConfigError, match=r"minidnn\[lowrank\]"):
            call()


def test_tensor_power_method_is_greedy_and_nested(rng):
    q = [np.linalg.qr(rng.standard_normal((n, 4)))[0] for n in (6, 5, 4, 4)]
    w = dec.cp_compose(np.array([4.0, 3.0, 2.0, 1.0]), q)
    weights, factors = dec.cp_power(w, 4)
    np.testing.assert_allclose(np.sort(weights)[::-1], [4, 3, 2, 1], atol=1e-6)
    two_w, two_f = dec.cp_power(w, 2)
    np.testing.assert_allclose(two_w, weights[:2])
    e2 = dec.relative_error(w, dec.cp_compose(two_w, two_f))
    assert np.isclose(e2, np.sqrt(5 / 30))       # what is left: the terms 2 and 1
    assert len(dec.cp_power(w, 4, energy=0.8)[0]) == 2   # 25/30 >= 0.8


# ---------------------------------------------------------------------- rank selection
def test_rank_rules(rng):
    assert energy_rank(np.array([3.0, 2.0, 1.0]), 0.9) == 2        # 13/14 >= 0.9
    assert energy_rank(np.array([3.0, 2.0, 1.0]), 0.95) == 3
    y = rng.standard_normal((60, 6)) @ rng.standard_normal((6, 80))
    assert vbmf_rank(y + 0.1 * rng.standard_normal((60, 80))) == 6
    assert vbmf_rank(rng.standard_normal((30, 50))) <= 2          # noise: (almost) nothing
    assert parse_rank_rule("energy:0.8") == ("energy", 0.8)
    assert parse_rank_rule("vbmf") == ("vbmf", None)
    for bad in ("energy:1.5", "energy:x", "vbmf:2", "best"):
        with pytest.raises(ConfigError):
            parse_rank_rule(bad)


@pytest.fixture(scope="module")
def trained():
    """SmallNet trained for a few steps on the synthetic data, with that data."""
    from minidnn.compress import train_spc
    train_ds, test_ds = synthetic()
    model = SmallNet().to(NumpyBackend())
    train_spc(model, train_ds, None, 80, 0.0, TrainConfig(batch_size=32, log_every=1000),
              log=lambda s: None)
    return model, train_ds, test_ds


def _fresh(trained) -> Model:
    model, _, _ = trained
    copy = SmallNet().to(NumpyBackend())
    copy.load_state_dict(model.state_dict())
    return copy


@pytest.mark.parametrize("method,rule", [("tucker2", "energy:0.7"), ("cp", "energy:0.8"),
                                         ("svd", "vbmf"), ("tucker2", "vbmf")])
def test_decompose_model_replaces_and_fine_tunes(trained, method, rule):
    model = _fresh(trained)
    dense = model.weight_count()
    settings = DecomposeSettings(method=method, ranks=rule, finetune_steps=3)
    lines = []
    new, records = decompose_model(model, settings, trained[1],
                                   TrainConfig(batch_size=32, log_every=1000), lines.append)
    assert type(new) is Model and new.arch == f"SmallNet-{method}"
    assert [r["layer"] for r in records] == [c.path for c in candidates(SmallNet(), method)]
    factored = [r for r in records if r["form"] != "dense"]
    assert factored and new.weight_count() < dense
    assert new.weight_count() == dense - sum(r["dense_weights"] - r["weights"] for r in records)
    assert any("fine-tuned 3 steps" in line for line in lines)
    assert len(model_ranks(new)) == len(factored)


def test_sparse_factors_train_with_the_prox_and_are_stored_as_csr(trained, tmp_path):
    model = _fresh(trained)
    settings = DecomposeSettings(method="tucker2", ranks="energy:0.9", finetune_steps=20,
                                 finetune_lr=0.01, l1=5.0)
    new, _ = decompose_model(model, settings, trained[1],
                             TrainConfig(batch_size=32, log_every=1000), lambda s: None)
    pieces = [p for n, p in new.prox_parameters() if ".first." in n or ".second." in n]
    assert any(p.is_sparse for p in pieces)
    assert sum(p.count_nonzero() for p in pieces) < sum(p.numel for p in pieces)
    path = tmp_path / "sparse.h5"
    mdn.save(new, path)
    assert any(r["form"] == "csr" for r in mdn.io.file_report(path)["layers"])


def test_genetic_search_is_bounded_and_returns_valid_ranks(trained):
    model = _fresh(trained)
    choices = candidates(model, "tucker2")
    before = {n: p.host_dense().copy() for n, p in model.named_parameters()}
    ranks = search_ranks(model, choices, trained[2],
                         GASettings(population=4, generations=3, seconds=30), lambda s: None)
    assert set(ranks) == {c.path for c in choices}
    assert all(v >= 1 for r in ranks.values() for v in r.values())
    after = dict(model.named_parameters())     # the model is left as it was
    assert set(after) == set(before)
    for n, w in before.items():
        np.testing.assert_array_equal(after[n].host_dense(), w)


def test_settings_are_checked():
    for bad in (dict(method="qr"), dict(method="svd", algorithm="als"),
                dict(method="cp", algorithm="hooi"), dict(finetune_steps=-1),
                dict(ranks="energy:2"), dict(finetune_lr=0.0), dict(l1=-1.0),
                dict(l1=0.1, finetune_steps=0)):
        with pytest.raises(ConfigError):
            DecomposeSettings(**bad).check()


# ---------------------------------------------------------------------- command and sweeps
@pytest.fixture
def saved(tmp_path, trained, monkeypatch):
    from minidnn import data as datasets
    monkeypatch.setattr(datasets, "load_dataset", lambda name, root=None: trained[1:])
    path = tmp_path / "small.h5"
    mdn.save(trained[0], path)
    return path


def test_cli_decompose_end_to_end(saved, tmp_path, capsys):
    out = tmp_path / "small-cp.h5"
    rc = cli.main(["decompose", str(saved), "--method", "cp", "--ranks", "energy:0.8",
                   "--finetune-steps", "2", "--backend", "numpy", "--data", "synthetic",
                   "--eval-images", "100", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "weights" in text and "FLOPs" in text and "saved" in text
    loaded = mdn.load(out)
    assert any(r["form"] == "cp" for r in model_ranks(loaded))
    meta = mdn.io.file_report(out)["metadata"]
    assert meta["decompose_method"] == "cp" and meta["ranks_rule"] == "energy:0.8"
    assert meta["test_images"] == 100


@pytest.mark.parametrize("args,needle", [
    (["--ranks", "energy:1.5"], "--ranks"), (["--finetune-steps", "-2"], "finetune"),
    (["--method", "svd", "--algorithm", "hooi"], "does not apply"),
    (["--ga-seconds", "0"], "ga-seconds"), (["--eval-images", "0"], "eval-images")])
def test_cli_bad_options_fail_in_one_line(saved, tmp_path, capsys, args, needle):
    argv = ["decompose", str(saved), "--backend", "numpy", "--out", str(tmp_path / "o.h5")]
    if "--method" not in args:
        argv += ["--method", "tucker2"]
    assert cli.main(argv + args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_methods_are_registered_for_sweeps():
    for name in ("tucker2", "cp", "svd"):
        assert name in sweep_variants() and name + "+retrain" in sweep_variants()
        method = get_method(name)
        assert method.params == ("energy",) and method.from_reference


def test_sweep_runs_a_low_rank_method(tmp_path, trained):
    from minidnn.compress.sweep import SweepSpec, make_jobs, run_sweep
    ref = tmp_path / "ref.h5"
    mdn.save(trained[0], ref)
    spec = SweepSpec(model="small", data="synthetic", train=TrainConfig(batch_size=32,
                     log_every=1000), retrain_steps=3, out=str(tmp_path / "sweep"),
                     model_factory=SmallNet, data_factory=synthetic, echo=False)
    jobs = make_jobs("tucker2+retrain", [0.8], "energy")
    result = run_sweep(spec, jobs, reference=str(ref), plot=False, log=lambda s: None)
    assert not result["failed"]
    records = result["records"]
    names = [r["method"] for r in records]
    assert "tucker2" in names and "tucker2+retrain" in names
    rec = next(r for r in records if r["method"] == "tucker2")
    assert rec["compression"] > 1 and 0 <= rec["accuracy"] <= 1
    assert json.loads(json.dumps(rec))  # JSON-friendly
